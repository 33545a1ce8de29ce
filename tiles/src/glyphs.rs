//! Glyphs for the map's labels, as MapLibre GL reads them: each glyph of a font drawn at 24 px as
//! a signed distance field with a 3-px border, 256 code points a file, written as the glyphs
//! protobuf by hand. The font is compiled in ([`Glyphs::bundled`], DejaVu Sans; see
//! `tiles/fonts/README.md`), so the map's road names need nothing from outside.
//!
//! The distance field follows Mapbox's TinySDF: coverage turned into squared distances with the
//! sub-pixel edge kept, Felzenszwalb and Huttenlocher's exact Euclidean distance transform inside
//! and outside, and `255 − 255 · (d / 8 + 0.25)` per pixel, so 192 is the glyph's edge.
//!
//! Format: <https://github.com/mapbox/glyph-pbf-composite/blob/master/proto/glyphs.proto>.

use fontdue::{Font, FontSettings};

use crate::mvt::{put_bytes, put_varint, zigzag32};

/// The font stack the bundled font is served as (the style's `text-font`).
pub const FONT_STACK: &str = "DejaVu Sans";

/// The bundled font file.
const BUNDLED: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// The size glyphs are drawn at; MapLibre scales from it.
const SIZE: f32 = 24.0;
/// Pixels of field around each glyph.
pub const BORDER: usize = 3;
/// How far (in px) the field reaches from an edge before it saturates.
const RADIUS: f64 = 8.0;
/// The share of the field's range that lies inside the glyph: the edge is at 255·(1 − 0.25).
const CUTOFF: f64 = 0.25;
const INF: f64 = 1e20;

/// Code points a file holds.
pub const RANGE: u32 = 256;

#[derive(Debug, thiserror::Error)]
pub enum GlyphError {
    #[error("the font could not be read: {0}")]
    Font(String),
    #[error(
        "{0:?} is not a glyph range: it is START-END with START a multiple of 256, END = START + 255, up to 65535"
    )]
    Range(String),
}

/// One glyph as the protobuf carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Glyph {
    pub id: u32,
    /// The glyph's ink, without the border; 0 × 0 for a space.
    pub width: u32,
    pub height: u32,
    /// From the pen to the ink's left edge.
    pub left: i32,
    /// From the line's top (the font's ascender) to the ink's top edge, negative downwards, as
    /// fontnik writes it.
    pub top: i32,
    pub advance: u32,
    /// `(width + 6) × (height + 6)` distances, row by row; empty when there is no ink.
    pub bitmap: Vec<u8>,
}

/// A font ready to give glyph ranges.
pub struct Glyphs {
    font: Font,
    ascender: f32,
}

impl std::fmt::Debug for Glyphs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Glyphs")
            .field("font", &self.font.name())
            .field("ascender", &self.ascender)
            .finish()
    }
}

impl Glyphs {
    /// DejaVu Sans, compiled in.
    pub fn bundled() -> Self {
        // The bundled file is read by a test; a failure here is a broken build, not input.
        #[allow(clippy::expect_used)]
        Self::from_ttf(BUNDLED).expect("the bundled font parses")
    }

    /// A TrueType or OpenType font.
    pub fn from_ttf(bytes: &[u8]) -> Result<Self, GlyphError> {
        let font = Font::from_bytes(bytes, FontSettings::default())
            .map_err(|e| GlyphError::Font(e.to_string()))?;
        let ascender = font
            .horizontal_line_metrics(SIZE)
            .map_or(SIZE * 0.9, |m| m.ascent);
        Ok(Self { font, ascender })
    }

    /// The glyph of code point `id`, or None where the font has none.
    pub fn glyph(&self, id: u32) -> Option<Glyph> {
        let ch = char::from_u32(id)?;
        if self.font.lookup_glyph_index(ch) == 0 {
            return None;
        }
        let (m, coverage) = self.font.rasterize(ch, SIZE);
        let advance = m.advance_width.round().max(0.0) as u32;
        let top_of_ink = m.ymin + m.height as i32;
        let (width, height) = (m.width, m.height);
        let bitmap = if width == 0 || height == 0 {
            Vec::new()
        } else {
            distance_field(&coverage, width, height)
        };
        Some(Glyph {
            id,
            width: width as u32,
            height: height as u32,
            left: m.xmin,
            top: top_of_ink - self.ascender.round() as i32,
            advance,
            bitmap,
        })
    }

    /// The protobuf of code points `start..start + 256` (those the font has), named `stack`.
    pub fn range(&self, stack: &str, start: u32) -> Vec<u8> {
        let end = start + RANGE - 1;
        let mut stack_msg = Vec::new();
        put_string(&mut stack_msg, 1, stack);
        put_string(&mut stack_msg, 2, &format!("{start}-{end}"));
        let mut glyph_msg = Vec::new();
        for id in start..=end {
            let Some(g) = self.glyph(id) else { continue };
            glyph_msg.clear();
            put_uint(&mut glyph_msg, 1, u64::from(g.id));
            if !g.bitmap.is_empty() {
                put_varint(&mut glyph_msg, (2 << 3) | 2);
                put_bytes(&mut glyph_msg, &g.bitmap);
            }
            put_uint(&mut glyph_msg, 3, u64::from(g.width));
            put_uint(&mut glyph_msg, 4, u64::from(g.height));
            put_uint(&mut glyph_msg, 5, u64::from(zigzag32(g.left)));
            put_uint(&mut glyph_msg, 6, u64::from(zigzag32(g.top)));
            put_uint(&mut glyph_msg, 7, u64::from(g.advance));
            put_varint(&mut stack_msg, (3 << 3) | 2);
            put_bytes(&mut stack_msg, &glyph_msg);
        }
        let mut out = Vec::with_capacity(stack_msg.len() + 8);
        put_varint(&mut out, (1 << 3) | 2);
        put_bytes(&mut out, &stack_msg);
        out
    }
}

/// The start of a range named as in a glyphs URL (`"256-511"`).
pub fn parse_range(name: &str) -> Result<u32, GlyphError> {
    let bad = || GlyphError::Range(name.to_owned());
    let (a, b) = name.split_once('-').ok_or_else(bad)?;
    let (start, end): (u32, u32) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if start % RANGE != 0 || end != start + RANGE - 1 || end > 65_535 {
        return Err(bad());
    }
    Ok(start)
}

fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field << 3));
    put_varint(out, v);
}

fn put_string(out: &mut Vec<u8>, field: u32, s: &str) {
    put_varint(out, u64::from((field << 3) | 2));
    put_bytes(out, s.as_bytes());
}

/// The signed distance field of a glyph's coverage (`width × height`, 0–255, row by row), with
/// [`BORDER`] pixels around it.
fn distance_field(coverage: &[u8], width: usize, height: usize) -> Vec<u8> {
    let (w, h) = (width + 2 * BORDER, height + 2 * BORDER);
    let len = w * h;
    // Squared distance to the nearest inked pixel (outer) and to the nearest blank one (inner);
    // a partly covered pixel starts at its edge's sub-pixel distance.
    let mut outer = vec![INF; len];
    let mut inner = vec![0.0f64; len];
    for y in 0..height {
        for x in 0..width {
            let a = f64::from(coverage[y * width + x]) / 255.0;
            if a == 0.0 {
                continue;
            }
            let j = (y + BORDER) * w + x + BORDER;
            if a >= 1.0 {
                outer[j] = 0.0;
                inner[j] = INF;
            } else {
                let d = 0.5 - a;
                outer[j] = if d > 0.0 { d * d } else { 0.0 };
                inner[j] = if d < 0.0 { d * d } else { 0.0 };
            }
        }
    }
    let mut scratch = Scratch::new(w.max(h));
    // Over the whole grid both ways (TinySDF runs the inner one over the ink's box alone, which
    // leaves a box filled edge to edge without a distance inside).
    edt(&mut outer, w, h, &mut scratch);
    edt(&mut inner, w, h, &mut scratch);
    outer
        .iter()
        .zip(&inner)
        .map(|(o, i)| {
            let d = o.sqrt() - i.sqrt();
            (255.0 - 255.0 * (d / RADIUS + CUTOFF))
                .round()
                .clamp(0.0, 255.0) as u8
        })
        .collect()
}

struct Scratch {
    f: Vec<f64>,
    v: Vec<usize>,
    z: Vec<f64>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Self {
            f: vec![0.0; n],
            v: vec![0; n],
            z: vec![0.0; n + 1],
        }
    }
}

/// The 2-D squared Euclidean distance transform of a `width × height` grid, in place: columns,
/// then rows.
fn edt(grid: &mut [f64], width: usize, height: usize, s: &mut Scratch) {
    for x in 0..width {
        edt1d(grid, x, width, height, s);
    }
    for y in 0..height {
        edt1d(grid, y * width, 1, width, s);
    }
}

/// Felzenszwalb & Huttenlocher's 1-D transform: the lower envelope of parabolas rooted at each
/// cell's value.
fn edt1d(grid: &mut [f64], offset: usize, step: usize, n: usize, s: &mut Scratch) {
    if n == 0 {
        return;
    }
    let (f, v, z) = (&mut s.f, &mut s.v, &mut s.z);
    v[0] = 0;
    z[0] = -INF;
    z[1] = INF;
    f[0] = grid[offset];
    let mut k = 0usize;
    for q in 1..n {
        f[q] = grid[offset + q * step];
        let qf = q as f64;
        // Drop the parabolas the new one hides; z[0] = −∞ keeps the first.
        let mut meet;
        loop {
            let rf = v[k] as f64;
            meet = (f[q] - f[v[k]] + qf * qf - rf * rf) / (qf - rf) / 2.0;
            if meet > z[k] || k == 0 {
                break;
            }
            k -= 1;
        }
        k += 1;
        v[k] = q;
        z[k] = meet;
        z[k + 1] = INF;
    }
    let mut k = 0usize;
    for q in 0..n {
        while z[k + 1] < q as f64 {
            k += 1;
        }
        let r = v[k];
        let d = q as f64 - r as f64;
        grid[offset + q * step] = f[r] + d * d;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(g: &Glyph) -> impl Fn(usize, usize) -> u8 + '_ {
        let w = g.width as usize + 2 * BORDER;
        move |x, y| g.bitmap[y * w + x]
    }

    #[test]
    fn a_glyph_is_a_field_with_its_border_edge_at_192() {
        let glyphs = Glyphs::bundled();
        let l = glyphs.glyph(u32::from('l')).unwrap();
        assert!(l.width >= 1 && l.height >= 15, "{l:?}");
        let (w, h) = (l.width as usize + 6, l.height as usize + 6);
        assert_eq!(l.bitmap.len(), w * h);
        let at = field(&l);
        // Corners lie outside the ink, the stem's middle inside it.
        assert!(at(0, 0) < 100, "{}", at(0, 0));
        assert!(at(w - 1, h - 1) < 100);
        let mid = (w / 2, h / 2);
        assert!(at(mid.0, mid.1) >= 192, "{}", at(mid.0, mid.1));
        // Falling away from the stem, step by step, to the border.
        let row: Vec<u8> = (0..=mid.0).map(|x| at(x, mid.1)).collect();
        assert!(row.windows(2).all(|p| p[0] <= p[1]), "{row:?}");
        // Sits on the baseline, reaching up to the ascender.
        assert!(l.top <= 0 && l.top > -6, "{l:?}");
        assert!(l.advance >= 5 && l.advance <= 10, "{l:?}");
    }

    #[test]
    fn the_field_matches_the_exact_distance_of_a_square() {
        // A 6 × 6 block of full ink: outside it the field is exactly the Euclidean distance.
        let coverage = vec![255u8; 36];
        let f = distance_field(&coverage, 6, 6);
        let w = 12;
        let expect = |d: f64| (255.0 - 255.0 * (d / RADIUS + CUTOFF)).round() as u8;
        // Two to the left of the block's left column (x = 3), on a middle row.
        assert_eq!(f[6 * w + 1], expect(2.0));
        // Diagonally off the corner (3, 3): √2 from (3, 3) at (2, 2).
        assert_eq!(f[2 * w + 2], expect(2f64.sqrt()));
        // Inside, one in from the edge: a blank pixel lies 2 away.
        assert_eq!(f[6 * w + 4], expect(-2.0));
    }

    #[test]
    fn a_space_has_an_advance_and_no_bitmap() {
        let space = Glyphs::bundled().glyph(32).unwrap();
        assert_eq!((space.width, space.height), (0, 0));
        assert!(space.bitmap.is_empty());
        assert!(space.advance > 4, "{space:?}");
    }

    #[test]
    fn ranges_are_256_code_points_from_a_multiple_of_256() {
        assert_eq!(parse_range("0-255").unwrap(), 0);
        assert_eq!(parse_range("65280-65535").unwrap(), 65_280);
        for bad in [
            "",
            "0",
            "1-256",
            "0-256",
            "256-255",
            "65536-65791",
            "-1-254",
            "a-b",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
    }

    /// A reader of the protobuf written from the .proto, not from the writer above.
    fn read_varint(b: &[u8], i: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let byte = b[*i];
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    fn fields(b: &[u8]) -> Vec<(u64, Result<u64, &[u8]>)> {
        let mut i = 0;
        let mut out = Vec::new();
        while i < b.len() {
            let key = read_varint(b, &mut i);
            match key & 7 {
                0 => out.push((key >> 3, Ok(read_varint(b, &mut i)))),
                2 => {
                    let n = read_varint(b, &mut i) as usize;
                    out.push((key >> 3, Err(&b[i..i + n])));
                    i += n;
                }
                t => panic!("wire type {t}"),
            }
        }
        out
    }

    #[test]
    fn a_range_is_one_fontstack_of_the_glyphs_the_font_has() {
        let glyphs = Glyphs::bundled();
        let pbf = glyphs.range(FONT_STACK, 0);
        let top = fields(&pbf);
        assert_eq!(top.len(), 1);
        let (1, Err(stack)) = top[0] else {
            panic!("{:?}", top[0].0)
        };
        let stack = fields(stack);
        assert_eq!(stack[0], (1, Err(FONT_STACK.as_bytes())));
        assert_eq!(stack[1], (2, Err(&b"0-255"[..])));
        let ids: Vec<u64> = stack[2..]
            .iter()
            .map(|(tag, g)| {
                assert_eq!(*tag, 3);
                let g = fields(g.unwrap_err());
                let get = |t: u64| g.iter().find(|(k, _)| *k == t).map(|(_, v)| *v);
                let (w, h) = (get(3).unwrap().unwrap(), get(4).unwrap().unwrap());
                match get(2) {
                    Some(Err(bitmap)) => assert_eq!(bitmap.len() as u64, (w + 6) * (h + 6)),
                    None => assert_eq!(w * h, 0),
                    other => panic!("{other:?}"),
                }
                get(1).unwrap().unwrap()
            })
            .collect();
        // Printable ASCII and Latin-1 are all there (DejaVu has them), control codes are not.
        for c in (32..127).chain(160..256) {
            assert!(ids.contains(&c), "{c}");
        }
        assert!(!ids.contains(&7));
        // "é" is there too, and a Cyrillic range is not empty.
        assert!(ids.contains(&u64::from('é')));
        assert!(glyphs.range(FONT_STACK, 1024).len() > 10_000);
    }
}

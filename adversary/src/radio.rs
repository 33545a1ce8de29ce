//! The radio world around the roads: the mobile networks of Monaco and the French communes around
//! it, their cell sites and how cells are numbered, the Wi-Fi access points along the streets,
//! and what a phone in a car hears at a place — signal by a log-distance path-loss model with
//! spatially correlated shadow fading, clipped to what phones report, heard only above the
//! receiver's sensitivity.

use std::collections::BTreeSet;

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::gauss;
use crate::geo::{Plane, Xy, bearing_diff};
use crate::roads::RoadMap;

/// A mobile network operator: its codes and how it numbers its cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    pub mcc: u16,
    pub mnc: u16,
    pub name: &'static str,
    /// Whether its sites stand in Monaco (the Monegasque operator) or in France.
    pub in_monaco: bool,
    /// LTE eNodeB ids are drawn upwards from here (the operator's range in the region).
    pub enb_base: u32,
    /// First tracking area code (LTE); the region's few TACs follow it.
    pub tac_base: u32,
    /// First location area code (GSM, WCDMA).
    pub lac_base: u32,
    /// First radio network controller id (WCDMA).
    pub rnc_base: u32,
    pub has_gsm: bool,
}

/// The operators around Monaco: Monaco Telecom (212 10) and the four French networks
/// (208 01 Orange, 10 SFR, 20 Bouygues Telecom, 15 Free Mobile, which has no 2G).
pub fn operators() -> Vec<Operator> {
    let op =
        |mcc, mnc, name, in_monaco, enb_base, tac_base, lac_base, rnc_base, has_gsm| Operator {
            mcc,
            mnc,
            name,
            in_monaco,
            enb_base,
            tac_base,
            lac_base,
            rnc_base,
            has_gsm,
        };
    vec![
        op(
            212,
            10,
            "Monaco Telecom",
            true,
            120_100,
            1010,
            1010,
            60,
            true,
        ),
        op(208, 1, "Orange", false, 521_400, 27_136, 6_110, 410, true),
        op(208, 10, "SFR", false, 642_800, 32_010, 7_420, 620, true),
        op(
            208,
            20,
            "Bouygues Telecom",
            false,
            263_500,
            18_020,
            1_830,
            230,
            true,
        ),
        op(
            208,
            15,
            "Free Mobile",
            false,
            884_200,
            16_040,
            1_640,
            910,
            false,
        ),
    ]
}

/// A cellular technology as geosubmit names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tech {
    Gsm,
    Wcdma,
    Lte,
}

impl Tech {
    pub fn as_str(self) -> &'static str {
        match self {
            Tech::Gsm => "gsm",
            Tech::Wcdma => "wcdma",
            Tech::Lte => "lte",
        }
    }

    /// What phones report (dBm): GSM RSSI, WCDMA RSCP, LTE RSRP (3GPP TS 27.007 / Android's
    /// `CellSignalStrength*` ranges).
    pub fn reported_range_dbm(self) -> (i32, i32) {
        match self {
            Tech::Gsm => (-113, -51),
            Tech::Wcdma => (-120, -25),
            Tech::Lte => (-140, -44),
        }
    }

    /// Below this a phone does not decode the cell.
    pub fn sensitivity_dbm(self) -> f64 {
        match self {
            Tech::Gsm => -108.0,
            Tech::Wcdma => -115.0,
            Tech::Lte => -120.0,
        }
    }
}

/// Phones report Wi-Fi RSSI in this range (dBm); below −90 a scan rarely lists an access point.
pub const WIFI_REPORTED_DBM: (i32, i32) = (-100, -20);
pub const WIFI_SENSITIVITY_DBM: f64 = -90.0;

/// Shadow fading that varies smoothly in space: a sum of random plane waves (random Fourier
/// features) is close to a Gaussian field with a Gaussian correlation of length `corr_m`, so two
/// phones a few metres apart see nearly the same shadowing, as they do behind the same building.
#[derive(Debug, Clone, PartialEq)]
pub struct Shadow {
    waves: Vec<(f64, f64, f64)>,
    sigma_db: f64,
}

impl Shadow {
    pub fn new(sigma_db: f64, corr_m: f64, rng: &mut StdRng) -> Self {
        let waves = (0..6)
            .map(|_| {
                (
                    gauss(rng, 1.0 / corr_m),
                    gauss(rng, 1.0 / corr_m),
                    rng.random_range(0.0..std::f64::consts::TAU),
                )
            })
            .collect();
        Self { waves, sigma_db }
    }

    pub fn at(&self, p: Xy) -> f64 {
        let k = self.waves.len().max(1) as f64;
        self.sigma_db
            * (2.0 / k).sqrt()
            * self
                .waves
                .iter()
                .map(|(kx, ky, ph)| (kx * p.x + ky * p.y + ph).cos())
                .sum::<f64>()
    }
}

/// One cell: a sector of a site, on one technology.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub operator: usize,
    pub tech: Tech,
    /// TAC (LTE) or LAC (GSM, WCDMA).
    pub area: u32,
    /// ECI (LTE: eNB × 256 + sector), CI (GSM), or RNC × 65536 + CI (WCDMA).
    pub cid: u64,
    /// PCI (LTE) or PSC (WCDMA); none for GSM.
    pub psc: Option<u16>,
    pub site: Xy,
    pub azimuth: f64,
    /// Reference power less losses in the car (dBm) before path loss and antenna pattern.
    pub power_dbm: f64,
    /// Path loss at 1 m for the cell's band (dB).
    pub loss_1m_db: f64,
    pub exponent: f64,
    pub shadow: Shadow,
}

/// One Wi-Fi access point, indoors beside a street.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessPoint {
    pub mac: [u8; 6],
    pub ssid: Option<String>,
    pub frequency_mhz: u32,
    pub channel: u16,
    pub pos: Xy,
    pub power_dbm: f64,
    pub loss_1m_db: f64,
    pub exponent: f64,
    pub shadow: Shadow,
}

impl AccessPoint {
    pub fn mac_text(&self) -> String {
        mac_text(&self.mac)
    }
}

pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A cell as a phone reports it in one scan.
#[derive(Debug, Clone, PartialEq)]
pub struct CellReading {
    pub tech: Tech,
    pub mcc: u16,
    pub mnc: u16,
    pub area: u32,
    pub cid: u64,
    pub psc: Option<u16>,
    pub signal_dbm: i32,
    pub age_ms: i64,
    pub serving: bool,
}

/// An access point as a phone reports it in one scan.
#[derive(Debug, Clone, PartialEq)]
pub struct WifiReading {
    pub mac: String,
    pub ssid: Option<String>,
    pub frequency_mhz: u32,
    pub channel: u16,
    pub signal_dbm: i32,
    pub age_ms: i64,
}

/// One geosubmit item: a position and what was heard there.
#[derive(Debug, Clone, PartialEq)]
pub struct RadioItem {
    /// When the report was made, Unix milliseconds (the fix was `age_ms` earlier).
    pub at_ms: i64,
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: f64,
    pub altitude_m: Option<f64>,
    pub heading: Option<f64>,
    pub speed_mps: Option<f64>,
    pub age_ms: i64,
    pub cells: Vec<CellReading>,
    pub wifi: Vec<WifiReading>,
}

/// A contributor's phone: its SIM's network, what it reports, and how often.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phone {
    pub operator: usize,
    /// Older phones (and phones set to 3G) report WCDMA and GSM cells only.
    pub lte: bool,
    /// At most this many cells per scan (serving and neighbours).
    pub max_cells: usize,
    /// Seconds between reports.
    pub interval_s: (f64, f64),
}

impl Phone {
    pub fn random(world: &RadioWorld, rng: &mut StdRng) -> Self {
        // A third of the phones driving around Monaco carry a Monegasque SIM.
        let operator = if rng.random_bool(0.35) {
            world.monaco_operator()
        } else {
            let french: Vec<usize> = (0..world.operators.len())
                .filter(|&o| !world.operators[o].in_monaco)
                .collect();
            french
                .get(rng.random_range(0..french.len().max(1)))
                .copied()
                .unwrap_or(0)
        };
        let lo = rng.random_range(3.0..7.0);
        Self {
            operator,
            lte: rng.random_bool(0.85),
            max_cells: rng.random_range(2..=7),
            interval_s: (lo, lo + rng.random_range(1.0..3.5)),
        }
    }
}

/// Every emitter around the roads.
#[derive(Debug, Clone)]
pub struct RadioWorld {
    pub operators: Vec<Operator>,
    pub cells: Vec<Cell>,
    pub access_points: Vec<AccessPoint>,
    /// Access points by 200 m grid square.
    ap_grid: std::collections::HashMap<(i64, i64), Vec<usize>>,
    /// TAC and LAC zones are squares of this many metres.
    zone_m: f64,
    origin: Xy,
}

const AP_GRID_M: f64 = 200.0;

/// Monaco's territory, roughly: the strip along the coast from Cap d'Ail to Roquebrune.
pub fn in_monaco(plane: &Plane, p: Xy) -> bool {
    let (lat, lon) = plane.lat_lon(p);
    (43.7247..=43.7519).contains(&lat) && (7.4090..=7.4398).contains(&lon)
}

fn ap_key(p: Xy) -> (i64, i64) {
    (
        (p.x / AP_GRID_M).floor() as i64,
        (p.y / AP_GRID_M).floor() as i64,
    )
}

impl RadioWorld {
    /// Places every operator's sites and the access points along the roads of `map`.
    pub fn build(map: &RoadMap, rng: &mut StdRng) -> Self {
        let operators = operators();
        let origin = map.min;
        let mut world = Self {
            operators,
            cells: Vec::new(),
            access_points: Vec::new(),
            ap_grid: std::collections::HashMap::new(),
            zone_m: 2500.0,
            origin,
        };
        let mut candidates: Vec<Xy> = map.junctions.iter().map(|j| j.pos).collect();
        for o in 0..world.operators.len() {
            candidates.shuffle(rng);
            world.place_sites(o, &candidates, &map.plane, rng);
        }
        world.place_access_points(map, rng);
        world
    }

    pub fn monaco_operator(&self) -> usize {
        self.operators.iter().position(|o| o.in_monaco).unwrap_or(0)
    }

    /// The TAC/LAC zone a place is in: a handful of squares over the extract.
    pub fn zone(&self, p: Xy) -> u32 {
        let zx = ((p.x - self.origin.x) / self.zone_m)
            .floor()
            .clamp(0.0, 3.0) as u32;
        let zy = ((p.y - self.origin.y) / self.zone_m)
            .floor()
            .clamp(0.0, 3.0) as u32;
        zx + 4 * zy
    }

    fn place_sites(&mut self, o: usize, candidates: &[Xy], plane: &Plane, rng: &mut StdRng) {
        let op = self.operators[o].clone();
        let mut sites: Vec<Xy> = Vec::new();
        let mut enb = op.enb_base;
        let mut gsm_ci: u32 = rng.random_range(1000..9000);
        let mut umts_ci: u32 = rng.random_range(1000..9000);
        for &c in candidates {
            if in_monaco(plane, c) != op.in_monaco {
                continue;
            }
            // Dense in Monaco's streets, a few hundred metres apart; sparser in the hills.
            let spacing = if op.in_monaco {
                rng.random_range(250.0..450.0)
            } else {
                rng.random_range(500.0..1200.0)
            };
            if sites.iter().any(|s| s.dist(c) < spacing) {
                continue;
            }
            let dir: f64 = rng.random_range(0.0..std::f64::consts::TAU);
            let off = rng.random_range(10.0..60.0);
            let site = c.add(off * dir.sin(), off * dir.cos());
            sites.push(site);
            let zone = self.zone(site);
            let azimuth0 = rng.random_range(0.0..120.0);
            enb += rng.random_range(1..25);
            let lte_loss = *[30.5, 37.5, 40.7]
                .get(rng.random_range(0..3))
                .unwrap_or(&37.5);
            let has_umts = rng.random_bool(0.6);
            let has_gsm = op.has_gsm && rng.random_bool(0.5);
            gsm_ci += rng.random_range(3..40);
            umts_ci += rng.random_range(3..40);
            for sector in 1..=3u32 {
                let azimuth = azimuth0 + 120.0 * f64::from(sector - 1);
                let cell = |tech, area, cid, psc, power, loss, rng: &mut StdRng| Cell {
                    operator: o,
                    tech,
                    area,
                    cid,
                    psc,
                    site,
                    azimuth,
                    power_dbm: power,
                    loss_1m_db: loss,
                    exponent: rng.random_range(2.9..3.5),
                    shadow: Shadow::new(rng.random_range(6.0..8.0), 50.0, rng),
                };
                // LTE RSRP: ~15 dBm reference signal per resource element, 17 dBi antenna,
                // 2 dB feeder loss, 6 dB into the car.
                let pci = rng.random_range(0..504);
                let lte = cell(
                    Tech::Lte,
                    op.tac_base + zone,
                    u64::from(enb) * 256 + u64::from(sector),
                    Some(pci),
                    24.0,
                    lte_loss,
                    rng,
                );
                self.cells.push(lte);
                if has_umts {
                    // WCDMA RSCP: 33 dBm pilot, same antenna and losses, 2100 MHz.
                    let psc = rng.random_range(0..512);
                    let c = cell(
                        Tech::Wcdma,
                        op.lac_base + 100 + zone,
                        u64::from(op.rnc_base + zone) * 65_536
                            + u64::from(umts_ci * 10 + sector) % 65_536,
                        Some(psc),
                        42.0,
                        38.9,
                        rng,
                    );
                    self.cells.push(c);
                }
                if has_gsm {
                    // GSM RSSI: 43 dBm BCCH carrier, 900 MHz.
                    let c = cell(
                        Tech::Gsm,
                        op.lac_base + zone,
                        u64::from((gsm_ci * 10 + sector) % 65_535 + 1),
                        None,
                        52.0,
                        31.5,
                        rng,
                    );
                    self.cells.push(c);
                }
            }
        }
    }

    fn place_access_points(&mut self, map: &RoadMap, rng: &mut StdRng) {
        let mut macs = BTreeSet::new();
        let shapes: Vec<Vec<Xy>> = map.segment_points().map(<[Xy]>::to_vec).collect();
        for points in shapes {
            let mut next = rng.random_range(0.0..40.0);
            let mut walked = 0.0;
            for w in points.windows(2) {
                let len = w[0].dist(w[1]);
                while next <= walked + len {
                    let at = w[0].lerp(w[1], ((next - walked) / len.max(1e-9)).clamp(0.0, 1.0));
                    let dense = in_monaco(&map.plane, at);
                    next += if dense {
                        rng.random_range(12.0..45.0)
                    } else {
                        rng.random_range(40.0..160.0)
                    };
                    let heading = w[0].bearing_to(w[1]);
                    let side = if rng.random_bool(0.5) { 90.0 } else { -90.0 };
                    let off = rng.random_range(8.0..35.0);
                    let dir = (heading + side).to_radians();
                    let pos = at.add(off * dir.sin(), off * dir.cos());
                    let mac = loop {
                        let mut m: [u8; 6] = rng.random();
                        // A unicast, globally administered address, as routers carry.
                        m[0] &= 0xFC;
                        if macs.insert(m) {
                            break m;
                        }
                    };
                    let ghz5 = rng.random_bool(0.35);
                    let channel: u16 = if ghz5 {
                        *[36u16, 40, 44, 48, 52, 56, 60, 64, 100, 104, 108, 112]
                            .get(rng.random_range(0..12))
                            .unwrap_or(&36)
                    } else if rng.random_bool(0.8) {
                        *[1u16, 6, 11].get(rng.random_range(0..3)).unwrap_or(&6)
                    } else {
                        rng.random_range(1..=13)
                    };
                    let frequency_mhz = if ghz5 {
                        5000 + 5 * u32::from(channel)
                    } else {
                        2407 + 5 * u32::from(channel)
                    };
                    let ssid = random_ssid(rng);
                    let ap = AccessPoint {
                        mac,
                        ssid,
                        frequency_mhz,
                        channel,
                        pos,
                        // 20 dBm and 2 dBi, less 5–15 dB of walls and 6 dB into the car.
                        power_dbm: 22.0 - rng.random_range(5.0..15.0) - 6.0,
                        loss_1m_db: if ghz5 { 46.4 } else { 40.0 },
                        exponent: rng.random_range(2.8..3.3),
                        shadow: Shadow::new(rng.random_range(4.0..6.0), 15.0, rng),
                    };
                    self.ap_grid
                        .entry(ap_key(pos))
                        .or_default()
                        .push(self.access_points.len());
                    self.access_points.push(ap);
                }
                walked += len;
            }
        }
    }

    /// The mean signal (dBm) of `cell` at `p`, with shadowing but no fast fading.
    pub fn cell_signal(&self, cell: &Cell, p: Xy) -> f64 {
        // The antenna stands ~25 m up: close by, the slant distance is what counts.
        let d = (cell.site.dist(p).powi(2) + 25.0 * 25.0).sqrt();
        let off_axis = bearing_diff(cell.site.bearing_to(p), cell.azimuth);
        let pattern = -(12.0 * (off_axis / 65.0).powi(2)).min(20.0);
        cell.power_dbm + pattern - cell.loss_1m_db - 10.0 * cell.exponent * d.log10()
            + cell.shadow.at(p)
    }

    pub fn ap_signal(&self, ap: &AccessPoint, p: Xy) -> f64 {
        let d = ap.pos.dist(p).max(3.0);
        ap.power_dbm - ap.loss_1m_db - 10.0 * ap.exponent * d.log10() + ap.shadow.at(p)
    }

    /// The access points within `r` metres of `p`.
    pub fn access_points_near(&self, p: Xy, r: f64) -> Vec<usize> {
        let k = (r / AP_GRID_M).ceil() as i64;
        let c = ap_key(p);
        let mut out = Vec::new();
        for gx in c.0 - k..=c.0 + k {
            for gy in c.1 - k..=c.1 + k {
                if let Some(list) = self.ap_grid.get(&(gx, gy)) {
                    out.extend(
                        list.iter()
                            .copied()
                            .filter(|&a| self.access_points[a].pos.dist(p) <= r),
                    );
                }
            }
        }
        out.sort_unstable();
        out
    }

    pub fn reading_of(&self, cell: &Cell, signal: f64, age_ms: i64, serving: bool) -> CellReading {
        let op = &self.operators[cell.operator];
        let (lo, hi) = cell.tech.reported_range_dbm();
        CellReading {
            tech: cell.tech,
            mcc: op.mcc,
            mnc: op.mnc,
            area: cell.area,
            cid: cell.cid,
            psc: cell.psc,
            signal_dbm: (signal.round() as i32).clamp(lo, hi),
            age_ms,
            serving,
        }
    }

    /// What `phone` hears at `p`: its network's cells above sensitivity (the strongest first,
    /// the first serving) and the access points a scan lists.
    pub fn hear(
        &self,
        phone: &Phone,
        p: Xy,
        rng: &mut StdRng,
    ) -> (Vec<CellReading>, Vec<WifiReading>) {
        let techs: &[Tech] = if phone.lte {
            &[Tech::Lte, Tech::Wcdma, Tech::Gsm]
        } else {
            &[Tech::Wcdma, Tech::Gsm]
        };
        let mut cells = Vec::new();
        for &tech in techs {
            let mut heard: Vec<(f64, usize)> = self
                .cells
                .iter()
                .enumerate()
                .filter(|(_, c)| c.operator == phone.operator && c.tech == tech)
                .filter(|(_, c)| c.site.dist(p) < 6000.0)
                .map(|(i, c)| (self.cell_signal(c, p) + gauss(rng, 2.5), i))
                .filter(|(s, _)| *s >= tech.sensitivity_dbm())
                .collect();
            if heard.is_empty() {
                continue;
            }
            heard.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for (k, (s, i)) in heard.iter().take(phone.max_cells).enumerate() {
                let age = rng.random_range(0..2000);
                cells.push(self.reading_of(&self.cells[*i], *s, age, k == 0));
            }
            // A phone camps on one technology and reports that one's cells.
            break;
        }
        let mut wifi: Vec<(f64, usize)> = Vec::new();
        for a in self.access_points_near(p, 150.0) {
            let s = self.ap_signal(&self.access_points[a], p) + gauss(rng, 2.5);
            // Scans miss some access points that are there.
            if s >= WIFI_SENSITIVITY_DBM && rng.random_bool(0.85) {
                wifi.push((s, a));
            }
        }
        wifi.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let wifi = wifi
            .into_iter()
            .take(30)
            .map(|(s, a)| self.wifi_reading(a, s, rng.random_range(0..4000)))
            .collect();
        (cells, wifi)
    }

    pub fn wifi_reading(&self, a: usize, signal: f64, age_ms: i64) -> WifiReading {
        let ap = &self.access_points[a];
        WifiReading {
            mac: ap.mac_text(),
            ssid: ap.ssid.clone(),
            frequency_mhz: ap.frequency_mhz,
            channel: ap.channel,
            signal_dbm: (signal.round() as i32).clamp(WIFI_REPORTED_DBM.0, WIFI_REPORTED_DBM.1),
            age_ms,
        }
    }
}

fn random_ssid(rng: &mut StdRng) -> Option<String> {
    if rng.random_bool(0.25) {
        return None;
    }
    let hex = |n: usize, rng: &mut StdRng| -> String {
        (0..n)
            .map(|_| char::from(b"0123456789ABCDEF"[rng.random_range(0..16)]))
            .collect()
    };
    Some(match rng.random_range(0..8) {
        0 | 1 => format!("Livebox-{}", hex(4, rng)),
        2 => format!("SFR-{}", hex(4, rng).to_lowercase()),
        3 => format!("Bbox-{}", hex(8, rng)),
        4 => format!("Freebox-{}", hex(6, rng)),
        5 => format!("MT-Fibre-{}", hex(4, rng)),
        6 => format!("DIRECT-{}-HP OfficeJet", hex(2, rng)),
        _ => format!("Residence {}", rng.random_range(1..40)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::roads::tests::monaco;
    use rand::SeedableRng;

    #[test]
    fn cells_are_numbered_as_their_operators_number_them() {
        let map = RoadMap::new(monaco());
        let mut rng = StdRng::seed_from_u64(1);
        let world = RadioWorld::build(&map, &mut rng);
        assert!(world.cells.len() > 100, "{} cells", world.cells.len());
        assert!(
            world.access_points.len() > 1000,
            "{}",
            world.access_points.len()
        );
        for c in &world.cells {
            let op = &world.operators[c.operator];
            match c.tech {
                Tech::Lte => {
                    let (enb, sector) = (c.cid / 256, c.cid % 256);
                    assert!((1..=3).contains(&sector));
                    assert!(enb >= u64::from(op.enb_base) && enb < u64::from(op.enb_base) + 10_000);
                    assert!(c.area >= op.tac_base && c.area < op.tac_base + 16);
                }
                Tech::Gsm => assert!(c.cid >= 1 && c.cid <= 65_535),
                Tech::Wcdma => assert!(c.cid < 1 << 28),
            }
        }
        for o in 0..world.operators.len() {
            assert!(
                world.cells.iter().filter(|c| c.operator == o).count() >= 9,
                "operator {o} has sites"
            );
        }
    }

    #[test]
    fn a_phone_on_the_road_hears_its_network_within_range() {
        let map = RoadMap::new(monaco());
        let mut rng = StdRng::seed_from_u64(4);
        let world = RadioWorld::build(&map, &mut rng);
        let mut heard_cells = 0;
        for o in 0..world.operators.len() {
            let phone = Phone {
                operator: o,
                lte: true,
                max_cells: 6,
                interval_s: (5.0, 6.0),
            };
            for j in map.crossings.iter().step_by(40) {
                let (cells, wifi) = world.hear(&phone, map.junctions[*j].pos, &mut rng);
                heard_cells += cells.len();
                for c in &cells {
                    let (lo, hi) = c.tech.reported_range_dbm();
                    assert!((lo..=hi).contains(&c.signal_dbm));
                    assert_eq!(world.operators[o].mnc, c.mnc);
                }
                for w in &wifi {
                    assert!((-90..=-20).contains(&w.signal_dbm), "{}", w.signal_dbm);
                }
            }
        }
        assert!(heard_cells > 100, "{heard_cells}");
    }
}

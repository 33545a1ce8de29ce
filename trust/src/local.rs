//! Metres on a local plane: the detectors measure tracks a few kilometres across, where an
//! equirectangular projection around the first point is off by far less than GNSS noise.

use covermap_domain::LatLon;

const METRES_PER_DEGREE: f64 = 6_371_008.8 * std::f64::consts::PI / 180.0;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Plane {
    lat0: f64,
    lon0: f64,
    kx: f64,
}

impl Plane {
    pub fn around(p: LatLon) -> Self {
        Self {
            lat0: p.lat,
            lon0: p.lon,
            kx: METRES_PER_DEGREE * p.lat.to_radians().cos(),
        }
    }

    pub fn xy(&self, p: LatLon) -> [f64; 2] {
        [
            (p.lon - self.lon0) * self.kx,
            (p.lat - self.lat0) * METRES_PER_DEGREE,
        ]
    }
}

pub(crate) fn dist(a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// The median of `v` (sorted in place); 0 when empty.
pub(crate) fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median absolute deviation from the median.
pub(crate) fn mad(v: &[f64]) -> f64 {
    let mut w = v.to_vec();
    let m = median(&mut w);
    let mut d: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    median(&mut d)
}

//! A local plane in metres around the road network, so that noise, offsets and path loss are
//! computed in metres rather than degrees. Over the ~10 km an extract spans, an equirectangular
//! projection is off by well under a metre, far below the GNSS noise being modelled.

use covermap_domain::LatLon;

const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A point on the local plane: metres east and north of the plane's origin.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Xy {
    pub x: f64,
    pub y: f64,
}

impl Xy {
    pub fn new(x: f64, y: f64) -> Self {
        Self { x, y }
    }

    pub fn dist(self, o: Xy) -> f64 {
        (self.x - o.x).hypot(self.y - o.y)
    }

    pub fn add(self, dx: f64, dy: f64) -> Xy {
        Xy::new(self.x + dx, self.y + dy)
    }

    /// The point `t` of the way from `self` to `o` (0 = self, 1 = o).
    pub fn lerp(self, o: Xy, t: f64) -> Xy {
        Xy::new(self.x + (o.x - self.x) * t, self.y + (o.y - self.y) * t)
    }

    /// Compass bearing from `self` to `o`, degrees clockwise from north in [0, 360).
    pub fn bearing_to(self, o: Xy) -> f64 {
        compass((o.x - self.x).atan2(o.y - self.y).to_degrees())
    }
}

/// An angle in degrees brought into [0, 360).
pub fn compass(deg: f64) -> f64 {
    deg.rem_euclid(360.0)
}

/// The smallest difference between two compass bearings, degrees in [0, 180].
pub fn bearing_diff(a: f64, b: f64) -> f64 {
    let d = (a - b).rem_euclid(360.0);
    d.min(360.0 - d)
}

/// The projection between WGS84 and the local plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plane {
    lat0: f64,
    lon0: f64,
    m_per_deg_lat: f64,
    m_per_deg_lon: f64,
}

impl Plane {
    pub fn around(origin: LatLon) -> Self {
        let m_per_deg_lat = EARTH_RADIUS_M * std::f64::consts::PI / 180.0;
        Self {
            lat0: origin.lat,
            lon0: origin.lon,
            m_per_deg_lat,
            m_per_deg_lon: m_per_deg_lat * origin.lat.to_radians().cos(),
        }
    }

    pub fn xy(&self, p: LatLon) -> Xy {
        Xy::new(
            (p.lon - self.lon0) * self.m_per_deg_lon,
            (p.lat - self.lat0) * self.m_per_deg_lat,
        )
    }

    /// Latitude and longitude of a point of the plane (not validated: the plane is small and
    /// around a valid origin).
    pub fn lat_lon(&self, p: Xy) -> (f64, f64) {
        (
            self.lat0 + p.y / self.m_per_deg_lat,
            self.lon0 + p.x / self.m_per_deg_lon,
        )
    }
}

/// Distance from `p` to the segment `a`–`b`, and how far along it (0–1) the nearest point is.
pub fn to_segment(p: Xy, a: Xy, b: Xy) -> (f64, f64) {
    let (dx, dy) = (b.x - a.x, b.y - a.y);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        (((p.x - a.x) * dx + (p.y - a.y) * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    (p.dist(a.lerp(b, t)), t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_plane_agrees_with_great_circle_distances() {
        let a = LatLon::new(43.73, 7.42).unwrap();
        let b = LatLon::new(43.745, 7.437).unwrap();
        let plane = Plane::around(a);
        let d = plane.xy(a).dist(plane.xy(b));
        assert!(
            (d - a.distance_m(b)).abs() < 1.0,
            "{d} vs {}",
            a.distance_m(b)
        );
        let (lat, lon) = plane.lat_lon(plane.xy(b));
        assert!((lat - b.lat).abs() < 1e-9 && (lon - b.lon).abs() < 1e-9);
    }

    #[test]
    fn bearings_are_compass_degrees() {
        let o = Xy::new(0.0, 0.0);
        assert!((o.bearing_to(Xy::new(0.0, 10.0)) - 0.0).abs() < 1e-9);
        assert!((o.bearing_to(Xy::new(10.0, 0.0)) - 90.0).abs() < 1e-9);
        assert!((o.bearing_to(Xy::new(-10.0, 0.0)) - 270.0).abs() < 1e-9);
        assert!((bearing_diff(350.0, 10.0) - 20.0).abs() < 1e-9);
    }
}

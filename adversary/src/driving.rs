//! How a car moves along a route: the speed each driver keeps on each class of road, slowing for
//! bends and turns, stopping at some junctions (lights, stop signs, traffic) and accelerating and
//! braking as cars do. The result is a [`Trajectory`]: where the car truly was at each moment.

use rand::Rng;
use rand::rngs::StdRng;

use crate::gauss;
use crate::geo::{Xy, bearing_diff};
use crate::roads::{RoadClass, Route};

/// How one driver drives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Driver {
    /// Where in each class's speed range (0 = its low end, 1 = its high end) the driver sits.
    pub briskness: f64,
    pub accel_mps2: f64,
    pub brake_mps2: f64,
    /// Chance of stopping at a junction (lights, stop signs, giving way).
    pub stop_chance: f64,
    /// Where on the lane-offset range of each class the driver keeps (0–1).
    pub lane: f64,
}

impl Driver {
    pub fn random(rng: &mut StdRng) -> Self {
        Self {
            briskness: rng.random_range(0.1..0.95),
            accel_mps2: rng.random_range(1.0..2.5),
            brake_mps2: rng.random_range(1.5..3.0),
            stop_chance: rng.random_range(0.05..0.15),
            lane: rng.random_range(0.0..1.0),
        }
    }
}

/// What sets the speed along the route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// A real driver: the class's speed, bends, stops.
    Traffic,
    /// Every class's speed multiplied (bends and stops still slow the car, scaled alike).
    ClassTimes(f64),
    /// This speed (m/s) everywhere, bends and stops ignored: no road vehicle does it.
    Constant(f64),
}

/// Where the car was, metres along the route, at each of a series of moments.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    pub route: Route,
    /// (seconds from the start, metres along the route), both non-decreasing.
    times: Vec<(f64, f64)>,
    /// Metres right of the centreline for each piece of the route.
    lane_offset: Vec<f64>,
}

/// The car's true state at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct State {
    pub pos: Xy,
    pub speed_mps: f64,
    /// Compass bearing of travel, degrees.
    pub heading: f64,
}

const STEP_M: f64 = 2.0;

impl Trajectory {
    /// Drives `route` as `driver` does, at `pace`.
    pub fn drive(route: Route, driver: &Driver, pace: Pace, rng: &mut StdRng) -> Self {
        let length = route.length_m();
        let steps = ((length / STEP_M).ceil() as usize).max(1);
        let ds = length / steps as f64;
        // Traffic: a slowly varying factor along the way (±10 %), as flows thicken and clear.
        let mut traffic = 1.0;
        let mut limit = vec![0.0; steps + 1];
        let mut dwell = vec![0.0; steps + 1];
        let mut vertex = 0;
        for (i, slot) in limit.iter_mut().enumerate() {
            let s = i as f64 * ds;
            while vertex + 1 < route.along.len() && route.along[vertex + 1] <= s {
                vertex += 1;
            }
            let piece = vertex.min(route.pieces.len().saturating_sub(1));
            let class = route
                .pieces
                .get(piece)
                .map_or(RoadClass::Residential, |p| p.0);
            let (lo, hi) = class.speed_range_kmh();
            let jitter: f64 = rng.random_range(-0.03..0.03);
            traffic = (traffic * 0.98 + 0.02 + gauss(rng, 0.03)).clamp(0.85, 1.1);
            *slot = (lo + (hi - lo) * driver.briskness) / 3.6 * (traffic + jitter);
        }
        // Bends and turns: the tighter the turn at a vertex, the slower through it.
        for v in 1..route.points.len().saturating_sub(1) {
            let b_in = route.points[v - 1].bearing_to(route.points[v]);
            let b_out = route.points[v].bearing_to(route.points[v + 1]);
            let turn = bearing_diff(b_in, b_out);
            if turn > 15.0 {
                let kmh = 12.0 + 60.0 * (1.0 - (turn / 120.0).min(1.0)).powi(2);
                let i = ((route.along[v] / ds).round() as usize).min(steps);
                for l in &mut limit[i.saturating_sub(2)..=(i + 2).min(steps)] {
                    *l = l.min(kmh / 3.6);
                }
            }
            if route.junction[v] && rng.random_bool(driver.stop_chance) {
                let i = ((route.along[v] / ds).round() as usize).min(steps);
                limit[i] = 0.0;
                // Lights: up to a minute, mostly well under; stop signs and giving way: a few
                // seconds.
                dwell[i] = if rng.random_bool(0.5) {
                    let red: f64 = rng.random_range(5.0..60.0);
                    red.min(rng.random_range(5.0..60.0))
                } else {
                    rng.random_range(0.0..5.0)
                };
            }
        }
        // Now and then the driver stops for an errand with the logger running: a few minutes
        // parked at a junction on the way.
        let interior = route.points.len().saturating_sub(2);
        if matches!(pace, Pace::Traffic) && interior > 0 && rng.random_bool(0.1) {
            let v = rng.random_range(1..=interior);
            let i = ((route.along[v] / ds).round() as usize).min(steps);
            limit[i] = 0.0;
            dwell[i] = rng.random_range(120.0..480.0);
        }
        let (accel, brake) = match pace {
            Pace::Traffic => (driver.accel_mps2, driver.brake_mps2),
            Pace::ClassTimes(f) => {
                for l in &mut limit {
                    *l *= f;
                }
                (driver.accel_mps2 * f, driver.brake_mps2 * f)
            }
            Pace::Constant(v) => {
                limit.fill(v);
                dwell.fill(0.0);
                (v, v)
            }
        };
        limit[0] = 0.0;
        limit[steps] = 0.0;
        let mut v = limit.clone();
        for i in 1..=steps {
            v[i] = v[i].min((v[i - 1] * v[i - 1] + 2.0 * accel * ds).sqrt());
        }
        for i in (0..steps).rev() {
            v[i] = v[i].min((v[i + 1] * v[i + 1] + 2.0 * brake * ds).sqrt());
        }
        let mut times = Vec::with_capacity(steps * 2);
        let mut t = 0.0;
        times.push((0.0, 0.0));
        for i in 0..steps {
            if dwell[i] > 0.0 {
                t += dwell[i];
                times.push((t, i as f64 * ds));
            }
            let mean = ((v[i] + v[i + 1]) / 2.0).max(0.3);
            t += ds / mean;
            times.push((t, (i + 1) as f64 * ds));
        }
        let lane_offset = route
            .pieces
            .iter()
            .map(|&(class, oneway)| {
                let (lo, hi) = class.lane_offset_range_m();
                if oneway {
                    // A oneway's lanes lie either side of its centreline.
                    (driver.lane - 0.5) * (hi - lo + 1.0)
                } else {
                    lo + (hi - lo) * driver.lane
                }
            })
            .collect();
        Self {
            route,
            times,
            lane_offset,
        }
    }

    pub fn duration_s(&self) -> f64 {
        self.times.last().map_or(0.0, |t| t.0)
    }

    fn along_at(&self, t: f64) -> f64 {
        let t = t.clamp(0.0, self.duration_s());
        let i = self.times.partition_point(|x| x.0 <= t);
        match (i.checked_sub(1).map(|k| self.times[k]), self.times.get(i)) {
            (Some(a), Some(b)) if b.0 > a.0 => a.1 + (b.1 - a.1) * (t - a.0) / (b.0 - a.0),
            (Some(a), _) => a.1,
            (None, _) => 0.0,
        }
    }

    /// Where the car was `t` seconds after the start, in its lane.
    pub fn at(&self, t: f64) -> State {
        let s = self.along_at(t);
        let (centre, piece, heading) = self.route.at(s);
        let off = self.lane_offset.get(piece).copied().unwrap_or(0.0);
        let right = (heading + 90.0).to_radians();
        let pos = centre.add(off * right.sin(), off * right.cos());
        let speed_mps = (self.along_at(t + 0.5) - self.along_at(t - 0.5)).max(0.0);
        State {
            pos,
            speed_mps,
            heading,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::roads::RoadMap;
    use crate::roads::tests::monaco;
    use rand::SeedableRng;

    #[test]
    fn a_drive_starts_and_ends_standing_and_keeps_road_speeds() {
        let map = RoadMap::new(monaco());
        let mut rng = StdRng::seed_from_u64(9);
        let route = map
            .random_route(&mut rng, None, (3000.0, 8000.0), &[])
            .unwrap();
        let driver = Driver::random(&mut rng);
        let traj = Trajectory::drive(route, &driver, Pace::Traffic, &mut rng);
        let dur = traj.duration_s();
        let mean = traj.route.length_m() / dur;
        assert!(
            (3.0..20.0).contains(&mean),
            "mean speed {mean} m/s over {dur} s"
        );
        assert!(traj.at(0.0).speed_mps < 1.5);
        assert!(traj.at(dur).speed_mps < 1.5);
        let top = (0..dur as usize)
            .map(|t| traj.at(t as f64).speed_mps)
            .fold(0.0, f64::max);
        assert!(top < 130.0 / 3.6 + 1.0, "top speed {top}");
    }

    #[test]
    fn a_constant_pace_is_kept() {
        let map = RoadMap::new(monaco());
        let mut rng = StdRng::seed_from_u64(2);
        let route = map
            .random_route(&mut rng, None, (3000.0, 8000.0), &[])
            .unwrap();
        let driver = Driver::random(&mut rng);
        let traj = Trajectory::drive(route, &driver, Pace::Constant(70.0), &mut rng);
        let mid = traj.at(traj.duration_s() / 2.0).speed_mps;
        assert!((mid - 70.0).abs() < 2.0, "{mid}");
    }
}

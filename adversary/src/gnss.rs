//! What a GNSS receiver reports for a true trajectory. A receiver's error is mostly slow: the
//! satellites' geometry and the atmosphere move the solution by a few metres over tens of seconds
//! (a first-order Gauss–Markov process per axis), with a small fast part on top; between tall
//! buildings reflections throw fixes tens of metres off for a few seconds (multipath), and in
//! tunnels the receiver reports nothing.

use rand::Rng;
use rand::rngs::StdRng;

use crate::driving::Trajectory;
use crate::gauss;
use crate::geo::{Plane, Xy};

/// One fix as a device writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackPoint {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub lat: f64,
    pub lon: f64,
    pub ele: Option<f64>,
}

/// One receiver's character.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Receiver {
    /// Deviation of the slow error on each axis, metres.
    pub slow_sigma_m: f64,
    /// Time constant of the slow error, seconds.
    pub tau_s: f64,
    /// Deviation of the fast (white) error on each axis, metres.
    pub white_sigma_m: f64,
    /// Chance that a drive has multipath episodes.
    pub multipath_chance: f64,
    /// Chance that a drive loses the sky for a while (tunnels, covered car parks).
    pub gap_chance: f64,
    /// Seconds between fixes.
    pub interval_s: f64,
    /// Whether the device writes an altitude.
    pub writes_ele: bool,
}

impl Receiver {
    /// A dashcam's or phone's receiver: 2–6 m of slow error, 0.3–1 m of fast; most log at 1 Hz,
    /// some every 2–5 s.
    pub fn random(rng: &mut StdRng) -> Self {
        // Horizontal error of r metres is about r / √2 on each axis.
        let horizontal = rng.random_range(2.0..6.0);
        Self {
            slow_sigma_m: horizontal / std::f64::consts::SQRT_2,
            tau_s: rng.random_range(15.0..60.0),
            white_sigma_m: rng.random_range(0.3..1.0),
            multipath_chance: rng.random_range(0.1..0.4),
            gap_chance: rng.random_range(0.05..0.3),
            interval_s: if rng.random_bool(0.7) {
                1.0
            } else {
                f64::from(rng.random_range(2..=5))
            },
            writes_ele: rng.random_bool(0.6),
        }
    }
}

/// The error a receiver adds, fix after fix.
#[derive(Debug, Clone, PartialEq)]
pub struct Noise {
    receiver: Receiver,
    slow: Xy,
    last_t: Option<f64>,
    /// (start s, length s, east m, north m) of each multipath episode.
    episodes: Vec<(f64, f64, f64, f64)>,
}

impl Noise {
    /// The error process of `receiver` over a drive of `duration_s`.
    pub fn new(receiver: Receiver, duration_s: f64, rng: &mut StdRng) -> Self {
        let mut episodes = Vec::new();
        if rng.random_bool(receiver.multipath_chance.clamp(0.0, 1.0)) {
            for _ in 0..rng.random_range(1..=3) {
                let size = rng.random_range(10.0..40.0);
                let dir: f64 = rng.random_range(0.0..std::f64::consts::TAU);
                episodes.push((
                    rng.random_range(0.0..duration_s.max(1.0)),
                    rng.random_range(2.0..8.0),
                    size * dir.sin(),
                    size * dir.cos(),
                ));
            }
        }
        let s = receiver.slow_sigma_m;
        Self {
            receiver,
            slow: Xy::new(gauss(rng, s), gauss(rng, s)),
            last_t: None,
            episodes,
        }
    }

    /// The error (east, north, metres) at `t` seconds; calls must come in time order.
    pub fn at(&mut self, t: f64, rng: &mut StdRng) -> Xy {
        let r = self.receiver;
        if let Some(last) = self.last_t {
            let phi = (-(t - last).max(0.0) / r.tau_s).exp();
            let keep = (1.0 - phi * phi).sqrt() * r.slow_sigma_m;
            self.slow = Xy::new(
                phi * self.slow.x + gauss(rng, keep),
                phi * self.slow.y + gauss(rng, keep),
            );
        }
        self.last_t = Some(t);
        let mut e = self
            .slow
            .add(gauss(rng, r.white_sigma_m), gauss(rng, r.white_sigma_m));
        for &(start, len, dx, dy) in &self.episodes {
            if (start..start + len).contains(&t) {
                // Reflections come and go over a second or two, not in one step.
                let w = ((t - start) / len * std::f64::consts::PI).sin();
                e = e.add(dx * w, dy * w);
            }
        }
        e
    }
}

/// A made-up but smooth terrain (metres above the sea): Monaco climbs from the coast to the
/// hills behind it. Altitude is optional in every format and no rule is drawn from it.
pub fn terrain_m(p: Xy, coast_y: f64) -> f64 {
    (2.0 + 0.09 * (p.y - coast_y) + 12.0 * (p.x / 350.0).sin()).max(1.0)
}

/// The fixes `receiver` writes while the car follows `traj`, starting at `start_ms`.
pub fn record(
    traj: &Trajectory,
    receiver: Receiver,
    start_ms: i64,
    plane: &Plane,
    coast_y: f64,
    rng: &mut StdRng,
) -> Vec<TrackPoint> {
    let duration = traj.duration_s();
    let mut noise = Noise::new(receiver, duration, rng);
    let gap = rng
        .random_bool(receiver.gap_chance.clamp(0.0, 1.0))
        .then(|| {
            let len = rng.random_range(10.0..45.0);
            let start = rng.random_range(0.0..(duration - len).max(1.0));
            start..start + len
        });
    let mut out = Vec::new();
    let mut t = 0.0;
    while t <= duration {
        let state = traj.at(t);
        let e = noise.at(t, rng);
        if !gap.as_ref().is_some_and(|g| g.contains(&t)) {
            let p = state.pos.add(e.x, e.y);
            let (lat, lon) = plane.lat_lon(p);
            out.push(TrackPoint {
                at_ms: start_ms + (t * 1000.0).round() as i64,
                lat,
                lon,
                ele: receiver
                    .writes_ele
                    .then(|| terrain_m(state.pos, coast_y) + 1.5 * e.y.abs()),
            });
        }
        t += receiver.interval_s;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_slow_error_keeps_its_deviation_and_is_correlated() {
        let mut rng = StdRng::seed_from_u64(5);
        let receiver = Receiver {
            slow_sigma_m: 3.0,
            tau_s: 30.0,
            white_sigma_m: 0.0,
            multipath_chance: 0.0,
            gap_chance: 0.0,
            interval_s: 1.0,
            writes_ele: false,
        };
        let mut noise = Noise::new(receiver, 1e6, &mut rng);
        let errs: Vec<Xy> = (0..200_000)
            .map(|t| noise.at(f64::from(t), &mut rng))
            .collect();
        let var = errs.iter().map(|e| e.x * e.x).sum::<f64>() / errs.len() as f64;
        assert!((var.sqrt() - 3.0).abs() < 0.2, "sigma {}", var.sqrt());
        // One second apart the error hardly changes; a minute apart it is mostly new.
        let corr = |lag: usize| {
            errs.windows(lag + 1)
                .map(|w| w[0].x * w[lag].x)
                .sum::<f64>()
                / (errs.len() - lag) as f64
                / var
        };
        assert!(corr(1) > 0.95, "{}", corr(1));
        assert!((corr(30) - (-1.0f64).exp()).abs() < 0.1, "{}", corr(30));
    }
}

//! The fraud patterns, each as the fraudsters of mapping networks (Hivemapper's spoofers,
//! Helium's mappers, the stumblers Ichnaea and beaconDB filter) commit it: with real roads, real
//! drives and real emitters where they would have them, made wrong in one way at a time.

use rand::Rng;
use rand::seq::SliceRandom;

use crate::driving::{Pace, Trajectory};
use crate::geo::{Xy, compass};
use crate::gnss::{Noise, Receiver, TrackPoint};
use crate::radio::{CellReading, RadioItem, Tech, WifiReading, mac_text};
use crate::roads::Route;
use crate::scenario::{Generator, Label, Recorded, TRIP_M};
use crate::{AdversaryError, FraudType, gauss};

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// The number in a strength's name: `within_300m` → 300, `across_5km` → 5000, `20min_5m` → (20, 5).
fn metres(s: &str) -> f64 {
    let tail = s.rsplit('_').next().unwrap_or(s);
    if let Some(km) = tail.strip_suffix("km") {
        km.parse::<f64>().unwrap_or(1.0) * 1000.0
    } else {
        tail.trim_end_matches('m').parse().unwrap_or(300.0)
    }
}

impl Generator<'_> {
    /// One fraud contributor of `fraud` (the `k`th) and its files, in strengths drawn in turn from
    /// `strengths`.
    pub(crate) fn fraudster(
        &mut self,
        fraud: FraudType,
        k: usize,
        strengths: &[&'static str],
    ) -> Result<(), AdversaryError> {
        if strengths.is_empty() {
            return Ok(());
        }
        let files = self.config.files_per_fraud_contributor.max(1);
        let (tracks, radio) = if fraud.is_radio() {
            (false, true)
        } else if matches!(fraud, FraudType::Stationary) {
            (true, true)
        } else {
            (true, false)
        };
        let c = self.new_contributor(Label::Fraud(fraud), tracks, radio);
        let w0 = Self::ms(self.config.window_start);
        let w1 = Self::ms(self.config.window_end);
        let mut t = w0 + self.rng.random_range(0..((w1 - w0) / 3).max(1));
        let mut state = FraudState::default();
        for j in 0..files {
            let strength = strengths[(k * files + j) % strengths.len()];
            t = self.daytime(t);
            let end = match fraud {
                FraudType::Teleport => self.teleport(c, strength, t, &mut state)?,
                FraudType::ImpossibleSpeed => self.impossible_speed(c, strength, t)?,
                FraudType::StraightLine => self.straight_line(c, strength, t)?,
                FraudType::Replay => self.replay(c, strength, t, &mut state)?,
                FraudType::OffNetwork => self.off_network(c, strength, t)?,
                FraudType::BadTime => self.bad_time(c, strength, t)?,
                FraudType::Stationary => self.stationary(c, strength, t, j % 2 == 0, &mut state)?,
                FraudType::RadioImpossibleSignal => self.impossible_signal(c, strength, t)?,
                FraudType::RadioFabricated => self.fabricated(c, strength, t)?,
                FraudType::RadioDuplicate => self.duplicate(c, strength, t, &mut state)?,
                FraudType::RadioStationary => self.radio_stationary(c, strength, t, &mut state),
                FraudType::RadioTeleport => self.radio_teleport(c, strength, t),
            };
            let room = ((w1 - end) / files as i64).max(20 * MINUTE_MS + 1);
            t = end.max(t)
                + self
                    .rng
                    .random_range(20 * MINUTE_MS..room.max(20 * MINUTE_MS + 1));
        }
        Ok(())
    }

    fn persona_of(&self, c: usize) -> crate::scenario::Persona {
        self.personas[c].clone()
    }

    /// A route of `length` starting at junction `from`, if one exists.
    fn route_from(&mut self, from: usize, length: (f64, f64)) -> Option<Route> {
        let tree = self.map.tree(from);
        let ends: Vec<usize> = self
            .map
            .crossings
            .iter()
            .copied()
            .filter(|&j| (length.0..=length.1).contains(&tree.metres[j]))
            .collect();
        let to = *ends.get(self.rng.random_range(0..ends.len().max(1)))?;
        self.map.route(&tree, to)
    }

    /// A route of `length` from `from`, or from anywhere if none leaves `from` (a junction in a
    /// corner of the network).
    fn route_from_or_anywhere(&mut self, from: usize, length: (f64, f64)) -> Option<Route> {
        self.route_from(from, length)
            .or_else(|| self.map.random_route(&mut self.rng, None, length, &[]))
    }

    /// A junction about `d` metres from `p` from which a drive of `length` can start, and that
    /// drive's route.
    fn route_from_afar(&mut self, p: Xy, d: f64, length: (f64, f64)) -> Option<(f64, Route)> {
        let mut near: Vec<(f64, usize)> = self
            .map
            .crossings
            .iter()
            .map(|&j| ((self.map.junctions[j].pos.dist(p) - d).abs(), j))
            .collect();
        near.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        // Within a quarter of the distance asked for, or else the nearest to it.
        let close = near.iter().take_while(|x| x.0 <= 0.25 * d).count().max(3);
        let mut firsts: Vec<usize> = near.iter().take(close.min(12)).map(|x| x.1).collect();
        firsts.shuffle(&mut self.rng);
        for j in firsts {
            if let Some(r) = self.route_from(j, length) {
                return Some((self.map.junctions[j].pos.dist(p), r));
            }
        }
        None
    }

    fn drive_route(&mut self, c: usize, route: Route, pace: Pace) -> Trajectory {
        let driver = self.personas[c].driver;
        Trajectory::drive(route, &driver, pace, &mut self.rng)
    }

    /// A splice of two drives with a jump between them, in one file (`within_*`), or a drive that
    /// starts far from where the contributor's last upload ended, seconds later (`across_*`).
    fn teleport(
        &mut self,
        c: usize,
        strength: &str,
        t: i64,
        state: &mut FraudState,
    ) -> Result<i64, AdversaryError> {
        let p = self.persona_of(c);
        let d = metres(strength);
        // A contributor's first upload has no earlier one to jump from: it is spliced within.
        let within = strength.replace("across", "within");
        let strength = if state.last_end.is_none() {
            within.as_str()
        } else {
            strength
        };
        let interval_ms = (p.logger.interval_s * 1000.0) as i64;
        let label = Label::Fraud(FraudType::Teleport);
        let (points, detail, end_junction) = match state.last_end {
            Some((junction, end_ms)) if strength.starts_with("across") => {
                let from = self.map.junctions[junction].pos;
                let (jump, route) = self
                    .route_from_afar(from, d, TRIP_M)
                    .ok_or(AdversaryError::TooFewRoads("a teleport"))?;
                let gap_ms = self.rng.random_range(5_000..90_000);
                let traj = self.drive_route(c, route, Pace::Traffic);
                let points = self.log(&traj, p.logger, end_ms + gap_ms);
                let detail = format!(
                    "starts {jump:.0} m from where the previous upload ended, {} s after it",
                    gap_ms / 1000
                );
                (points, detail, traj.route.to)
            }
            _ => {
                let from = state.last_end.map_or(p.home, |e| e.0);
                let first = self
                    .route_from_or_anywhere(from, (1500.0, 5000.0))
                    .ok_or(AdversaryError::TooFewRoads("a teleport"))?;
                let a = self.drive_route(c, first, Pace::Traffic);
                let (jump, second) = self
                    .route_from_afar(self.map.junctions[a.route.to].pos, d, (1500.0, 5000.0))
                    .ok_or(AdversaryError::TooFewRoads("a teleport"))?;
                let b = self.drive_route(c, second, Pace::Traffic);
                let mut points = self.log(&a, p.logger, t);
                let b_start = points.last().map_or(t, |x| x.at_ms) + interval_ms;
                let after = (b_start - t) / 1000;
                points.extend(self.log(&b, p.logger, b_start));
                let detail = format!(
                    "jump of {jump:.0} m between fixes {} s apart, {after} s into the drive",
                    interval_ms / 1000
                );
                (points, detail, b.route.to)
            }
        };
        let end = points.last().map_or(t, |x| x.at_ms);
        state.last_end = Some((end_junction, end));
        self.gpx_draft(c, label, strength, detail, &points);
        Ok(end)
    }

    /// A real route driven at twice its class's speed, or at a constant 250 or 400 km/h.
    fn impossible_speed(
        &mut self,
        c: usize,
        strength: &str,
        t: i64,
    ) -> Result<i64, AdversaryError> {
        let p = self.persona_of(c);
        let pace = match strength {
            "twice_class" => Pace::ClassTimes(2.0),
            "250kmh" => Pace::Constant(250.0 / 3.6),
            _ => Pace::Constant(400.0 / 3.6),
        };
        let traj = self.trip(&p, Some(p.home), (3000.0, 12_000.0), pace)?;
        let points = self.log(&traj, p.logger, t);
        let top = (0..traj.duration_s() as usize)
            .map(|s| traj.at(s as f64).speed_mps)
            .fold(0.0, f64::max);
        let detail = format!(
            "{:.0} m in {:.0} s: mean {:.0} km/h, top {:.0} km/h",
            traj.route.length_m(),
            traj.duration_s(),
            traj.route.length_m() / traj.duration_s().max(1.0) * 3.6,
            top * 3.6
        );
        self.gpx_draft(
            c,
            Label::Fraud(FraudType::ImpossibleSpeed),
            strength,
            detail,
            &points,
        );
        Ok(points.last().map_or(t, |x| x.at_ms))
    }

    /// Straight lines between a few waypoints of a real route, at one speed, fixes exactly one
    /// interval apart, with no error or only white noise.
    fn straight_line(&mut self, c: usize, strength: &str, t: i64) -> Result<i64, AdversaryError> {
        let p = self.persona_of(c);
        let mut parts = strength.split('_');
        let waypoints: usize = parts
            .next()
            .and_then(|w| w.strip_prefix("wp"))
            .and_then(|w| w.parse().ok())
            .unwrap_or(3);
        let noise_m: f64 = parts
            .next()
            .and_then(|n| n.strip_prefix("noise"))
            .and_then(|n| n.trim_end_matches('m').parse().ok())
            .unwrap_or(0.0);
        let route = self
            .route_from_or_anywhere(p.home, (3000.0, 10_000.0))
            .ok_or(AdversaryError::TooFewRoads("a straight-line track"))?;
        let n = waypoints.max(2);
        let wps: Vec<Xy> = (0..n)
            .map(|i| route.at(route.length_m() * i as f64 / (n - 1) as f64).0)
            .collect();
        let speed = self.rng.random_range(30.0..60.0) / 3.6;
        let interval = p.logger.interval_s;
        let mut points = Vec::new();
        let mut step = 0usize;
        let total: f64 = wps.windows(2).map(|w| w[0].dist(w[1])).sum();
        loop {
            let s = step as f64 * interval * speed;
            if s > total {
                break;
            }
            let mut left = s;
            let mut pos = wps[n - 1];
            for w in wps.windows(2) {
                let len = w[0].dist(w[1]);
                if left <= len {
                    pos = w[0].lerp(w[1], if len > 0.0 { left / len } else { 0.0 });
                    break;
                }
                left -= len;
            }
            let pos = pos.add(gauss(&mut self.rng, noise_m), gauss(&mut self.rng, noise_m));
            let (lat, lon) = self.map.plane.lat_lon(pos);
            points.push(TrackPoint {
                at_ms: t + (step as f64 * interval * 1000.0) as i64,
                lat,
                lon,
                ele: None,
            });
            step += 1;
        }
        let detail = format!(
            "{n} waypoints of a {:.0} m route, {:.0} km/h, white noise {noise_m} m",
            route.length_m(),
            speed * 3.6
        );
        self.gpx_draft(
            c,
            Label::Fraud(FraudType::StraightLine),
            strength,
            detail,
            &points,
        );
        Ok(points.last().map_or(t, |x| x.at_ms))
    }

    /// A shift of hours to days that keeps a copy of `[first, last]` before the files arrive.
    fn shift_ms(&mut self, (lo, hi): (i64, i64), first: i64, last: i64) -> i64 {
        let magnitude = self.rng.random_range(lo..hi);
        // Before the files arrive; and, so that the arrival's hour changes nothing, at most a
        // day after the window.
        let latest = (Self::ms(self.config.arrival) - HOUR_MS)
            .min(Self::ms(self.config.window_end) + DAY_MS);
        if self.rng.random_bool(0.5) && last + magnitude < latest {
            magnitude
        } else if first - magnitude > 0 {
            -magnitude
        } else {
            magnitude.min(latest - last)
        }
    }

    /// Someone else's drive, or the contributor's own (uploaded first, honestly), again: times
    /// shifted by hours to days, moved by up to 20 m, up to 5 m of noise added.
    fn replay(
        &mut self,
        c: usize,
        strength: &str,
        t: i64,
        state: &mut FraudState,
    ) -> Result<i64, AdversaryError> {
        let source = if strength == "own" {
            match &state.own {
                Some(o) => o.clone(),
                None => {
                    let home = self.personas[c].home;
                    let own = self.honest_drive(c, Some(home), t)?;
                    state.own = Some(own.clone());
                    own
                }
            }
        } else {
            let others: Vec<usize> = (0..self.honest_drives.len())
                .filter(|&i| {
                    self.honest_drives[i].0 != c && self.honest_drives[i].1.gpx_file.is_some()
                })
                .collect();
            let pick = *others
                .get(self.rng.random_range(0..others.len().max(1)))
                .ok_or(AdversaryError::TooFewRoads("an honest drive to replay"))?;
            self.honest_drives[pick].1.clone()
        };
        let (Some(first), Some(last)) = (source.points.first(), source.points.last()) else {
            return Ok(t);
        };
        let shift = self.shift_ms((HOUR_MS, 5 * DAY_MS), first.at_ms, last.at_ms);
        let offset = self.rng.random_range(0.0..20.0);
        let dir: f64 = self.rng.random_range(0.0..std::f64::consts::TAU);
        let noise = self.rng.random_range(0.0..5.0);
        let points: Vec<TrackPoint> = source
            .points
            .iter()
            .map(|q| {
                let lat_lon = covermap_domain::LatLon {
                    lat: q.lat,
                    lon: q.lon,
                };
                let xy = self.map.plane.xy(lat_lon).add(
                    offset * dir.sin() + gauss(&mut self.rng, noise),
                    offset * dir.cos() + gauss(&mut self.rng, noise),
                );
                let (lat, lon) = self.map.plane.lat_lon(xy);
                TrackPoint {
                    at_ms: q.at_ms + shift,
                    lat,
                    lon,
                    ele: q.ele,
                }
            })
            .collect();
        let detail = format!(
            "{} drive shifted {:+.1} h, moved {offset:.1} m, noise {noise:.1} m",
            if strength == "own" {
                "own"
            } else {
                "another contributor's"
            },
            shift as f64 / HOUR_MS as f64
        );
        let d = self.gpx_draft(
            c,
            Label::Fraud(FraudType::Replay),
            strength,
            detail,
            &points,
        );
        self.drafts[d].copy_of = source.gpx_file;
        Ok(t.max(points.last().map_or(t, |x| x.at_ms)))
    }

    /// A point more than 250 m from any road (the sea off Monaco, the hills above it) and, with
    /// `within`, less than that far from one.
    fn off_road_point(&mut self, within: Option<f64>) -> Option<Xy> {
        let (min, max) = (self.map.min, self.map.max);
        for _ in 0..20_000 {
            let p = Xy::new(
                self.rng.random_range(min.x - 1000.0..max.x + 1000.0),
                self.rng.random_range(min.y - 1000.0..max.y + 1000.0),
            );
            let far = self.map.distance_to_road(p, 250.0).is_infinite();
            let near_enough = within.is_none_or(|w| self.map.distance_to_road(p, w).is_finite());
            if far && near_enough {
                return Some(p);
            }
        }
        None
    }

    /// A drive that ends at a road end near `far`: (the drive, where it ends).
    fn drive_towards(&mut self, c: usize, far: Xy) -> Option<Trajectory> {
        let mut nearest: Vec<(f64, usize)> = (0..self.map.junctions.len())
            .map(|j| (self.map.junctions[j].pos.dist(far), j))
            .collect();
        nearest.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let nearest: Vec<usize> = nearest.iter().take(25).map(|x| x.1).collect();
        for _ in 0..30 {
            let o = self.random_crossing();
            let tree = self.map.tree(o);
            let reachable = nearest
                .iter()
                .copied()
                .find(|&j| (600.0..8000.0).contains(&tree.metres[j]));
            if let Some(route) = reachable.and_then(|j| self.map.route(&tree, j)) {
                return Some(self.drive_route(c, route, Pace::Traffic));
            }
        }
        None
    }

    /// A path at car speeds that keeps away from the roads, from `start` for `duration_s`,
    /// (seconds, position) every `interval` seconds from `t0`. Until it is 160 m from any road it
    /// heads for `towards`.
    fn wander(
        &mut self,
        start: Xy,
        towards: Xy,
        duration_s: f64,
        interval: f64,
        t0: f64,
    ) -> Vec<(f64, Xy)> {
        let speed = self.rng.random_range(8.0..15.0);
        let mut heading = start.bearing_to(towards);
        let mut pos = start;
        let mut out = Vec::new();
        let mut left_road = false;
        let mut t = 0.0;
        while t <= duration_s {
            out.push((t0 + t, pos));
            heading = compass(heading + gauss(&mut self.rng, 6.0) * interval.sqrt());
            let mut next = pos;
            for attempt in 0..12 {
                let h = heading.to_radians();
                next = pos.add(speed * interval * h.sin(), speed * interval * h.cos());
                let clear = self.map.distance_to_road(next, 160.0).is_infinite();
                if !left_road || clear || attempt == 11 {
                    break;
                }
                heading = compass(heading + self.rng.random_range(60.0..180.0));
            }
            left_road = left_road || self.map.distance_to_road(next, 160.0).is_infinite();
            pos = next;
            t += interval;
        }
        out
    }

    /// Mostly or wholly off the roads: a track in the sea or the hills at car speed (`full`),
    /// or a real drive that leaves the road for 60–80 % of its fixes (`partial`).
    fn off_network(&mut self, c: usize, strength: &str, t: i64) -> Result<i64, AdversaryError> {
        let p = self.persona_of(c);
        let (road_part, walk) = if strength == "full" {
            let far = self
                .off_road_point(None)
                .ok_or(AdversaryError::TooFewRoads("a place away from the roads"))?;
            let duration = self.rng.random_range(300.0..900.0);
            let towards = far.add(self.rng.random_range(-500.0..500.0), 500.0);
            (
                None,
                self.wander(far, towards, duration, p.logger.interval_s, 0.0),
            )
        } else {
            // A real drive to the shore or the edge of the hills, then off the road.
            let mut found = None;
            for _ in 0..10 {
                let Some(far) = self.off_road_point(Some(600.0)) else {
                    continue;
                };
                if let Some(traj) = self.drive_towards(c, far) {
                    found = Some((far, traj));
                    break;
                }
            }
            let (far, traj) = found.ok_or(AdversaryError::TooFewRoads("a drive to the shore"))?;
            let share = self.rng.random_range(0.6..0.8);
            let off = traj.duration_s() * share / (1.0 - share);
            let start = self.map.junctions[traj.route.to].pos;
            let interval = p.logger.interval_s;
            let walk = self.wander(start, far, off, interval, traj.duration_s() + interval);
            (Some(traj), walk)
        };
        let interval = p.logger.interval_s;
        let total = walk.last().map_or(0.0, |w| w.0);
        let mut noise = Noise::new(p.logger, total, &mut self.rng);
        let mut truth: Vec<(f64, Xy)> = Vec::new();
        if let Some(traj) = &road_part {
            let mut s = 0.0;
            while s <= traj.duration_s() {
                truth.push((s, traj.at(s).pos));
                s += interval;
            }
        }
        truth.extend(walk);
        let points: Vec<TrackPoint> = truth
            .iter()
            .map(|&(s, pos)| {
                let e = noise.at(s, &mut self.rng);
                let (lat, lon) = self.map.plane.lat_lon(pos.add(e.x, e.y));
                TrackPoint {
                    at_ms: t + (s * 1000.0).round() as i64,
                    lat,
                    lon,
                    ele: None,
                }
            })
            .collect();
        let away = truth
            .iter()
            .filter(|(_, pos)| self.map.distance_to_road(*pos, 100.0).is_infinite())
            .count();
        let detail = format!(
            "{:.0} % of {} fixes more than 100 m from any road",
            100.0 * away as f64 / truth.len().max(1) as f64,
            truth.len()
        );
        self.gpx_draft(
            c,
            Label::Fraud(FraudType::OffNetwork),
            strength,
            detail,
            &points,
        );
        Ok(points.last().map_or(t, |x| x.at_ms))
    }

    /// A real drive stamped hours or days in the future, years ago, or ending after the file
    /// arrived.
    fn bad_time(&mut self, c: usize, strength: &str, t: i64) -> Result<i64, AdversaryError> {
        let p = self.persona_of(c);
        let traj = self.trip(&p, Some(p.home), TRIP_M, Pace::Traffic)?;
        let arrival = Self::ms(self.config.arrival);
        let duration_ms = (traj.duration_s() * 1000.0) as i64;
        let (start, detail) = match strength {
            "future_hours" => {
                let ahead = self.rng.random_range(HOUR_MS..12 * HOUR_MS);
                (
                    arrival + ahead,
                    format!(
                        "starts {:.1} h after arrival",
                        ahead as f64 / HOUR_MS as f64
                    ),
                )
            }
            "future_days" => {
                let ahead = self.rng.random_range(DAY_MS..30 * DAY_MS);
                (
                    arrival + ahead,
                    format!(
                        "starts {:.1} days after arrival",
                        ahead as f64 / DAY_MS as f64
                    ),
                )
            }
            "ancient_years" => {
                let back = self.rng.random_range(2 * 365 * DAY_MS..8 * 365 * DAY_MS);
                let start = self.daytime(Self::ms(self.config.window_start) - back);
                (
                    start,
                    format!(
                        "{:.1} years before the window",
                        back as f64 / (365.0 * DAY_MS as f64)
                    ),
                )
            }
            _ => {
                let late = self.rng.random_range(60_000..240_000);
                (
                    arrival + late - duration_ms,
                    format!("ends {} s after arrival", late / 1000),
                )
            }
        };
        let points = self.log(&traj, p.logger, start);
        self.gpx_draft(
            c,
            Label::Fraud(FraudType::BadTime),
            strength,
            detail,
            &points,
        );
        // The contributor's own clock moves on from the window, whatever the file claims.
        Ok(t + duration_ms)
    }

    /// A spot by the kerb or in a building beside a road.
    fn parking_spot(&mut self, max_off: f64) -> Xy {
        let j = self.random_crossing();
        let dir: f64 = self.rng.random_range(0.0..std::f64::consts::TAU);
        let off = self.rng.random_range(3.0..max_off);
        self.map.junctions[j]
            .pos
            .add(off * dir.sin(), off * dir.cos())
    }

    /// Radio reports from `spot` for `duration_s` that claim the phone is moving.
    fn farm_items(
        &mut self,
        c: usize,
        spot: Xy,
        radius: f64,
        start_ms: i64,
        duration_s: f64,
    ) -> Vec<RadioItem> {
        let Some(phone) = self.personas[c].phone else {
            return Vec::new();
        };
        let gnss = Receiver {
            slow_sigma_m: radius / 2.5,
            white_sigma_m: 0.5,
            multipath_chance: 0.0,
            gap_chance: 0.0,
            ..self.personas[c].phone_gnss
        };
        let mut noise = Noise::new(gnss, duration_s, &mut self.rng);
        let mut heading = self.rng.random_range(0.0..360.0);
        let claimed = self.rng.random_range(5.0..20.0);
        let mut items = Vec::new();
        let mut t = 0.0;
        while t <= duration_s {
            let e = noise.at(t, &mut self.rng);
            heading = compass(heading + gauss(&mut self.rng, 20.0));
            let speed = claimed + gauss(&mut self.rng, 2.0);
            let item = self.item_at(&phone, spot, e, speed.max(2.0), heading, start_ms, t);
            if !item.cells.is_empty() || !item.wifi.is_empty() {
                items.push(item);
            }
            t += self
                .rng
                .random_range(phone.interval_s.0..phone.interval_s.1);
        }
        items
    }

    /// A parked device logging for 20 minutes to 2 hours within 5 to 30 m; every other file
    /// with a radio batch from the same spot claiming speed and heading.
    fn stationary(
        &mut self,
        c: usize,
        strength: &str,
        t: i64,
        paired: bool,
        state: &mut FraudState,
    ) -> Result<i64, AdversaryError> {
        let p = self.persona_of(c);
        let minutes: f64 = strength
            .split("min")
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(20.0);
        let radius = metres(strength);
        let spot = match state.spot {
            Some(s) => s,
            None => {
                let s = self.parking_spot(8.0);
                state.spot = Some(s);
                s
            }
        };
        let receiver = Receiver {
            slow_sigma_m: radius / 2.5,
            white_sigma_m: p.logger.white_sigma_m,
            multipath_chance: 0.0,
            gap_chance: 0.0,
            ..p.logger
        };
        let duration = minutes * 60.0;
        let mut noise = Noise::new(receiver, duration, &mut self.rng);
        let mut points = Vec::new();
        let mut s = 0.0;
        while s <= duration {
            let e = noise.at(s, &mut self.rng);
            let (lat, lon) = self.map.plane.lat_lon(spot.add(e.x, e.y));
            points.push(TrackPoint {
                at_ms: t + (s * 1000.0).round() as i64,
                lat,
                lon,
                ele: None,
            });
            s += receiver.interval_s;
        }
        let label = Label::Fraud(FraudType::Stationary);
        let detail = format!("{minutes:.0} min parked, spread {radius:.0} m");
        self.gpx_draft(c, label, strength, detail, &points);
        if paired {
            let items = self.farm_items(c, spot, radius, t, duration);
            if !items.is_empty() {
                let detail = format!(
                    "{} reports from the parked spot claiming movement",
                    items.len()
                );
                self.radio_draft(c, label, strength, detail, &items);
            }
        }
        Ok(t + (duration * 1000.0) as i64)
    }

    /// A real drive's radio reports with the phone's network as scanned, for the radio frauds to
    /// change.
    fn scanned_drive(&mut self, c: usize) -> Result<(Trajectory, Vec<RadioItem>), AdversaryError> {
        let p = self.persona_of(c);
        let phone = p.phone.ok_or(AdversaryError::Config(
            "a radio fraudster needs a phone".into(),
        ))?;
        let traj = self.trip(&p, Some(p.home), TRIP_M, Pace::Traffic)?;
        let items = self.scan_along(&traj, &phone, p.phone_gnss, 0);
        Ok((traj, items))
    }

    fn item_xy(&self, item: &RadioItem) -> Xy {
        self.map.plane.xy(covermap_domain::LatLon {
            lat: item.lat,
            lon: item.lon,
        })
    }

    /// Real reports with signals out of the technology's reporting range (`out_of_range`), or
    /// with cells whose sites are kilometres away reported as if beside the phone (`too_strong`).
    fn impossible_signal(
        &mut self,
        c: usize,
        strength: &str,
        t: i64,
    ) -> Result<i64, AdversaryError> {
        let (_, mut items) = self.scanned_drive(c)?;
        shift_items(&mut items, t);
        let operator = self.personas[c].phone.map_or(0, |p| p.operator);
        for item in &mut items {
            if strength == "out_of_range" {
                for cell in &mut item.cells {
                    let (lo, hi) = cell.tech.reported_range_dbm();
                    cell.signal_dbm = match self.rng.random_range(0..4) {
                        0 | 1 => self.rng.random_range(hi + 2..hi + 30),
                        2 => self.rng.random_range(1..30),
                        _ => self.rng.random_range(lo - 30..lo - 3),
                    };
                }
                for w in &mut item.wifi {
                    if self.rng.random_bool(0.5) {
                        w.signal_dbm = self.rng.random_range(-15..20);
                    }
                }
            } else {
                let here = self.item_xy(item);
                let mut far: Vec<usize> = (0..self.radio.cells.len())
                    .filter(|&i| {
                        let cell = &self.radio.cells[i];
                        let d = cell.site.dist(here);
                        cell.operator == operator
                            && cell.tech == Tech::Lte
                            && (1500.0..5000.0).contains(&d)
                    })
                    .collect();
                far.shuffle(&mut self.rng);
                let mut strong: Vec<CellReading> = far
                    .iter()
                    .take(self.rng.random_range(1..=3))
                    .map(|&i| {
                        let s = self.rng.random_range(-65.0..-50.0);
                        self.radio.reading_of(&self.radio.cells[i], s, 0, false)
                    })
                    .collect();
                if let Some(first) = strong.first_mut() {
                    first.serving = true;
                }
                for cell in &mut item.cells {
                    cell.serving = false;
                }
                strong.append(&mut item.cells);
                item.cells = strong;
            }
        }
        let detail = format!(
            "{} reports of a real drive, signals {strength}",
            items.len()
        );
        self.radio_draft(
            c,
            Label::Fraud(FraudType::RadioImpossibleSignal),
            strength,
            detail,
            &items,
        );
        Ok(items.last().map_or(t, |i| i.at_ms))
    }

    /// Reports along a real drive with fabricated cells: random ids under the real operator
    /// (and made-up access points), ids outside the operator's numbering, or real emitters whose
    /// sites are kilometres away.
    fn fabricated(&mut self, c: usize, strength: &str, t: i64) -> Result<i64, AdversaryError> {
        let (traj, mut items) = self.scanned_drive(c)?;
        shift_items(&mut items, t);
        let phone = self.personas[c].phone.ok_or(AdversaryError::Config(
            "a radio fraudster needs a phone".into(),
        ))?;
        let op = self.radio.operators[phone.operator].clone();
        match strength {
            "random_ids" => {
                // A fixed set of made-up emitters along the route, so that each is "seen"
                // around one place, as a careful fabricator would place them.
                let existing: std::collections::BTreeSet<u64> =
                    self.radio.cells.iter().map(|c| c.cid).collect();
                let mut fakes: Vec<(Xy, CellReading)> = Vec::new();
                for _ in 0..self.rng.random_range(6..15) {
                    let along = self.rng.random_range(0.0..traj.route.length_m());
                    let site = traj.route.at(along).0.add(
                        self.rng.random_range(-300.0..300.0),
                        self.rng.random_range(-300.0..300.0),
                    );
                    let cid = loop {
                        let enb = u64::from(op.enb_base) + self.rng.random_range(0..10_000);
                        let cid = enb * 256 + self.rng.random_range(1..=3);
                        if !existing.contains(&cid) {
                            break cid;
                        }
                    };
                    fakes.push((
                        site,
                        CellReading {
                            tech: Tech::Lte,
                            mcc: op.mcc,
                            mnc: op.mnc,
                            area: op.tac_base + self.radio.zone(site),
                            cid,
                            psc: Some(self.rng.random_range(0..504)),
                            signal_dbm: 0,
                            age_ms: 0,
                            serving: false,
                        },
                    ));
                }
                let mut fake_aps: Vec<(Xy, WifiReading)> = Vec::new();
                for _ in 0..self.rng.random_range(20..60) {
                    let along = self.rng.random_range(0.0..traj.route.length_m());
                    let pos = traj.route.at(along).0.add(
                        self.rng.random_range(-30.0..30.0),
                        self.rng.random_range(-30.0..30.0),
                    );
                    let mut mac: [u8; 6] = self.rng.random();
                    mac[0] &= 0xFC;
                    let channel = *[1u16, 6, 11].get(self.rng.random_range(0..3)).unwrap_or(&6);
                    fake_aps.push((
                        pos,
                        WifiReading {
                            mac: mac_text(&mac),
                            ssid: Some(format!(
                                "Livebox-{:04X}",
                                self.rng.random_range(0..0x10000)
                            )),
                            frequency_mhz: 2407 + 5 * u32::from(channel),
                            channel,
                            signal_dbm: 0,
                            age_ms: 0,
                        },
                    ));
                }
                for item in &mut items {
                    let here = self.map.plane.xy(covermap_domain::LatLon {
                        lat: item.lat,
                        lon: item.lon,
                    });
                    let mut cells: Vec<CellReading> = fakes
                        .iter()
                        .filter(|(site, _)| site.dist(here) < 1500.0)
                        .map(|(site, r)| {
                            let d = site.dist(here).max(20.0);
                            let s = 24.0 - 37.5 - 32.0 * d.log10() + gauss(&mut self.rng, 4.0);
                            CellReading {
                                signal_dbm: (s.round() as i32).clamp(-140, -44),
                                age_ms: self.rng.random_range(0..2000),
                                ..r.clone()
                            }
                        })
                        .collect();
                    cells.sort_by_key(|c| std::cmp::Reverse(c.signal_dbm));
                    cells.truncate(phone.max_cells);
                    if let Some(first) = cells.first_mut() {
                        first.serving = true;
                    }
                    item.cells = cells;
                    item.wifi = fake_aps
                        .iter()
                        .filter(|(pos, _)| pos.dist(here) < 80.0)
                        .map(|(pos, w)| {
                            let d = pos.dist(here).max(3.0);
                            let s = 6.0 - 40.0 - 30.0 * d.log10() + gauss(&mut self.rng, 3.0);
                            WifiReading {
                                signal_dbm: (s.round() as i32).clamp(-95, -30),
                                age_ms: self.rng.random_range(0..4000),
                                ..w.clone()
                            }
                        })
                        .collect();
                }
            }
            "misfit_ids" => {
                // Each real cell renamed, consistently, to an id outside the operator's
                // numbering: a TAC it does not use here, an eNB outside its range.
                let mut renamed: std::collections::BTreeMap<(u32, u64), (u32, u64)> =
                    std::collections::BTreeMap::new();
                for item in &mut items {
                    for cell in &mut item.cells {
                        let key = (cell.area, cell.cid);
                        let new = *renamed.entry(key).or_insert_with(|| {
                            let area = loop {
                                let a = self.rng.random_range(100..65_000);
                                if !(op.tac_base..op.tac_base + 64).contains(&a)
                                    && !(op.lac_base..op.lac_base + 200).contains(&a)
                                {
                                    break a;
                                }
                            };
                            let cid = match cell.tech {
                                Tech::Lte => {
                                    let enb = loop {
                                        let e = self.rng.random_range(1..1_000_000u64);
                                        if !(u64::from(op.enb_base)
                                            ..u64::from(op.enb_base) + 20_000)
                                            .contains(&e)
                                        {
                                            break e;
                                        }
                                    };
                                    enb * 256 + self.rng.random_range(1..=3)
                                }
                                Tech::Wcdma => {
                                    self.rng.random_range(1..4096u64) * 65_536
                                        + self.rng.random_range(1..65_535)
                                }
                                Tech::Gsm => self.rng.random_range(1..65_535),
                            };
                            (area, cid)
                        });
                        cell.area = new.0;
                        cell.cid = new.1;
                    }
                }
            }
            _ => {
                // Real cells and access points of a place 2–6 km away, heard "here".
                for item in &mut items {
                    let here = self.item_xy(item);
                    let mut far: Vec<(f64, usize)> = (0..self.radio.cells.len())
                        .filter(|&i| {
                            let cell = &self.radio.cells[i];
                            cell.operator == phone.operator
                                && (2000.0..6000.0).contains(&cell.site.dist(here))
                        })
                        .map(|i| (self.radio.cells[i].site.dist(here), i))
                        .collect();
                    far.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    let n = item.cells.len().max(2);
                    item.cells = far
                        .iter()
                        .take(n)
                        .enumerate()
                        .map(|(k, &(_, i))| {
                            let s = self.rng.random_range(-95.0..-70.0);
                            self.radio.reading_of(&self.radio.cells[i], s, 0, k == 0)
                        })
                        .collect();
                    let aps = self.radio.access_points.len();
                    if aps > 0 && !item.wifi.is_empty() {
                        let anchor = (0..20)
                            .map(|_| self.rng.random_range(0..aps))
                            .find(|&a| self.radio.access_points[a].pos.dist(here) > 2000.0);
                        if let Some(a) = anchor {
                            let pos = self.radio.access_points[a].pos;
                            let near = self.radio.access_points_near(pos, 60.0);
                            item.wifi = near
                                .into_iter()
                                .take(item.wifi.len())
                                .map(|a| {
                                    let s = self.rng.random_range(-88.0..-60.0);
                                    self.radio.wifi_reading(a, s, 0)
                                })
                                .collect();
                        }
                    }
                }
            }
        }
        items.retain(|i| !i.cells.is_empty() || !i.wifi.is_empty());
        let detail = format!(
            "{} reports along a real drive, cells {strength}",
            items.len()
        );
        self.radio_draft(
            c,
            Label::Fraud(FraudType::RadioFabricated),
            strength,
            detail,
            &items,
        );
        Ok(items.last().map_or(t, |i| i.at_ms))
    }

    /// Someone else's batch, or one's own (sent first, honestly), sent again: times shifted by
    /// ten minutes to three days, positions moved 5–10 m, signals changed by 1–2 dB.
    fn duplicate(
        &mut self,
        c: usize,
        strength: &str,
        t: i64,
        state: &mut FraudState,
    ) -> Result<i64, AdversaryError> {
        let source = if strength == "own" {
            match &state.own {
                Some(o) => o.clone(),
                None => {
                    let home = self.personas[c].home;
                    let own = self.honest_drive(c, Some(home), t)?;
                    state.own = Some(own.clone());
                    own
                }
            }
        } else {
            let others: Vec<usize> = (0..self.honest_drives.len())
                .filter(|&i| {
                    self.honest_drives[i].0 != c && self.honest_drives[i].1.radio_file.is_some()
                })
                .collect();
            let pick = *others
                .get(self.rng.random_range(0..others.len().max(1)))
                .ok_or(AdversaryError::TooFewRoads("an honest radio batch to copy"))?;
            self.honest_drives[pick].1.clone()
        };
        let (Some(first), Some(last)) = (
            source.items.iter().map(|i| i.at_ms).min(),
            source.items.iter().map(|i| i.at_ms).max(),
        ) else {
            return Ok(t);
        };
        let shift = self.shift_ms((10 * MINUTE_MS, 3 * DAY_MS), first, last);
        let mut items = source.items.clone();
        for item in &mut items {
            item.at_ms += shift;
            let here = self.item_xy(item);
            let off = self.rng.random_range(5.0..10.0);
            let dir: f64 = self.rng.random_range(0.0..std::f64::consts::TAU);
            let (lat, lon) = self
                .map
                .plane
                .lat_lon(here.add(off * dir.sin(), off * dir.cos()));
            item.lat = lat;
            item.lon = lon;
            for cell in &mut item.cells {
                let (lo, hi) = cell.tech.reported_range_dbm();
                cell.signal_dbm = (cell.signal_dbm + self.db_nudge()).clamp(lo, hi);
            }
            for w in &mut item.wifi {
                w.signal_dbm = (w.signal_dbm + self.db_nudge()).clamp(-100, -20);
            }
        }
        let detail = format!(
            "{} batch of {} reports shifted {:+.1} h, moved 5–10 m, signals ±1–2 dB",
            if strength == "own" {
                "own"
            } else {
                "another contributor's"
            },
            items.len(),
            shift as f64 / HOUR_MS as f64
        );
        let d = self.radio_draft(
            c,
            Label::Fraud(FraudType::RadioDuplicate),
            strength,
            detail,
            &items,
        );
        self.drafts[d].copy_of = source.radio_file;
        Ok(t.max(last + shift))
    }

    fn db_nudge(&mut self) -> i32 {
        let n = self.rng.random_range(1..=2);
        if self.rng.random_bool(0.5) { n } else { -n }
    }

    /// Batch after batch from one spot (a phone on a windowsill), each claiming speed and heading.
    fn radio_stationary(
        &mut self,
        c: usize,
        strength: &str,
        t: i64,
        state: &mut FraudState,
    ) -> i64 {
        let radius = metres(strength);
        let spot = match state.spot {
            Some(s) => s,
            None => {
                let s = self.parking_spot(30.0);
                state.spot = Some(s);
                s
            }
        };
        let duration = self.rng.random_range(600.0..1800.0);
        let items = self.farm_items(c, spot, radius, t, duration);
        let detail = format!(
            "{} reports over {:.0} min within {radius:.0} m of one spot",
            items.len(),
            duration / 60.0
        );
        self.radio_draft(
            c,
            Label::Fraud(FraudType::RadioStationary),
            strength,
            detail,
            &items,
        );
        t + (duration * 1000.0) as i64
    }

    /// Reports a second apart whose positions jump kilometres each time, each with what is really
    /// heard at its position (as if read from a database of emitters).
    fn radio_teleport(&mut self, c: usize, strength: &str, t: i64) -> i64 {
        let Some(phone) = self.personas[c].phone else {
            return t;
        };
        let d = metres(strength);
        let n = self.rng.random_range(60..200);
        let start = self.random_crossing();
        let mut here = self.map.junctions[start].pos;
        let mut items = Vec::new();
        let claimed = self.rng.random_range(8.0..15.0);
        for i in 0..n {
            let e = Xy::new(gauss(&mut self.rng, 3.0), gauss(&mut self.rng, 3.0));
            let heading = self.rng.random_range(0.0..360.0);
            let item = self.item_at(&phone, here, e, claimed, heading, t, f64::from(i));
            if !item.cells.is_empty() || !item.wifi.is_empty() {
                items.push(item);
            }
            let next: Vec<usize> = self
                .map
                .crossings
                .iter()
                .copied()
                .filter(|&j| {
                    let dist = self.map.junctions[j].pos.dist(here);
                    (0.8 * d..1.2 * d).contains(&dist)
                })
                .collect();
            here = match next.get(self.rng.random_range(0..next.len().max(1))) {
                Some(&j) => self.map.junctions[j].pos,
                None => {
                    // Nothing that far away: the farthest junction there is.
                    let far = self
                        .map
                        .crossings
                        .iter()
                        .copied()
                        .max_by(|&a, &b| {
                            self.map.junctions[a]
                                .pos
                                .dist(here)
                                .total_cmp(&self.map.junctions[b].pos.dist(here))
                        })
                        .unwrap_or(0);
                    self.map.junctions[far].pos
                }
            };
        }
        let detail = format!(
            "{} reports a second apart, each about {d:.0} m from the last",
            items.len()
        );
        self.radio_draft(
            c,
            Label::Fraud(FraudType::RadioTeleport),
            strength,
            detail,
            &items,
        );
        items.last().map_or(t, |i| i.at_ms)
    }
}

/// What a fraud contributor carries from one file to the next.
#[derive(Debug, Clone, Default)]
pub(crate) struct FraudState {
    /// Where and when its last upload ended (junction, Unix ms).
    last_end: Option<(usize, i64)>,
    /// Its own honest drive, uploaded once and then copied.
    own: Option<Recorded>,
    /// The spot it farms from.
    spot: Option<Xy>,
}

/// Moves items recorded from time 0 to start at `t`.
fn shift_items(items: &mut [RadioItem], t: i64) {
    for i in items {
        i.at_ms += t;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn strengths_name_their_distances() {
        assert_eq!(metres("within_300m"), 300.0);
        assert_eq!(metres("across_5km"), 5000.0);
        assert_eq!(metres("60min_15m"), 15.0);
        assert_eq!(metres("3km"), 3000.0);
    }
}

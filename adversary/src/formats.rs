//! The bytes devices send: GPX 1.1 tracks and Ichnaea geosubmit v2 bodies.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use crate::gnss::TrackPoint;
use crate::radio::RadioItem;

/// How a device writes its GPX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpxStyle {
    pub creator: &'static str,
    /// Whether times carry milliseconds (phone loggers) or whole seconds (dashcams).
    pub millis: bool,
    /// Decimal places of latitude and longitude.
    pub decimals: usize,
}

/// Loggers and dashcams whose GPX the set imitates.
pub const GPX_STYLES: [GpxStyle; 4] = [
    GpxStyle {
        creator: "GPSLogger 131 - http://gpslogger.mendhak.com/",
        millis: true,
        decimals: 7,
    },
    GpxStyle {
        creator: "OsmAnd~ 4.8.6",
        millis: false,
        decimals: 6,
    },
    GpxStyle {
        creator: "Viofo A229 GPS export",
        millis: false,
        decimals: 6,
    },
    GpxStyle {
        creator: "Open GPX Tracker for iOS",
        millis: true,
        decimals: 8,
    },
];

fn time_text(ms: i64, millis: bool) -> String {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
    let format = if millis {
        SecondsFormat::Millis
    } else {
        SecondsFormat::Secs
    };
    t.to_rfc3339_opts(format, true)
}

/// A GPX 1.1 document of one track with one segment.
pub fn gpx(points: &[TrackPoint], name: &str, style: GpxStyle) -> Vec<u8> {
    let mut s = String::with_capacity(points.len() * 110 + 400);
    s.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    s.push('\n');
    s.push_str(&format!(
        r#"<gpx version="1.1" creator="{}" xmlns="http://www.topografix.com/GPX/1/1" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="http://www.topografix.com/GPX/1/1 http://www.topografix.com/GPX/1/1/gpx.xsd">"#,
        style.creator
    ));
    s.push('\n');
    if let Some(first) = points.first() {
        s.push_str(&format!(
            "<metadata><time>{}</time></metadata>\n",
            time_text(first.at_ms, false)
        ));
    }
    s.push_str(&format!("<trk><name>{name}</name><trkseg>\n"));
    let d = style.decimals;
    for p in points {
        s.push_str(&format!(
            r#"<trkpt lat="{:.d$}" lon="{:.d$}">"#,
            p.lat, p.lon
        ));
        if let Some(e) = p.ele {
            s.push_str(&format!("<ele>{e:.1}</ele>"));
        }
        s.push_str(&format!(
            "<time>{}</time></trkpt>\n",
            time_text(p.at_ms, style.millis)
        ));
    }
    s.push_str("</trkseg></trk>\n</gpx>\n");
    s.into_bytes()
}

fn round_to(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

/// One item as NeoStumbler writes it: Ichnaea's v2 field names, no nulls.
pub fn geosubmit_item(item: &RadioItem) -> Value {
    let mut position = Map::new();
    position.insert("latitude".into(), json!(round_to(item.lat, 7)));
    position.insert("longitude".into(), json!(round_to(item.lon, 7)));
    position.insert("accuracy".into(), json!(round_to(item.accuracy_m, 1)));
    position.insert("age".into(), json!(item.age_ms));
    if let Some(a) = item.altitude_m {
        position.insert("altitude".into(), json!(round_to(a, 1)));
    }
    if let Some(h) = item.heading {
        position.insert("heading".into(), json!(round_to(h, 1)));
    }
    if let Some(v) = item.speed_mps {
        position.insert("speed".into(), json!(round_to(v, 1)));
    }
    position.insert("source".into(), json!("gps"));
    let cells: Vec<Value> = item
        .cells
        .iter()
        .map(|c| {
            let mut o = Map::new();
            o.insert("radioType".into(), json!(c.tech.as_str()));
            o.insert("mobileCountryCode".into(), json!(c.mcc));
            o.insert("mobileNetworkCode".into(), json!(c.mnc));
            o.insert("locationAreaCode".into(), json!(c.area));
            o.insert("cellId".into(), json!(c.cid));
            if let Some(p) = c.psc {
                o.insert("primaryScramblingCode".into(), json!(p));
            }
            o.insert("signalStrength".into(), json!(c.signal_dbm));
            o.insert("age".into(), json!(c.age_ms));
            o.insert("serving".into(), json!(u8::from(c.serving)));
            Value::Object(o)
        })
        .collect();
    let wifi: Vec<Value> = item
        .wifi
        .iter()
        .map(|w| {
            let mut o = Map::new();
            o.insert("macAddress".into(), json!(w.mac));
            if let Some(s) = &w.ssid {
                o.insert("ssid".into(), json!(s));
            }
            o.insert("frequency".into(), json!(w.frequency_mhz));
            o.insert("channel".into(), json!(w.channel));
            o.insert("signalStrength".into(), json!(w.signal_dbm));
            o.insert("age".into(), json!(w.age_ms));
            Value::Object(o)
        })
        .collect();
    let mut o = Map::new();
    o.insert("timestamp".into(), json!(item.at_ms));
    o.insert("position".into(), Value::Object(position));
    if !cells.is_empty() {
        o.insert("cellTowers".into(), Value::Array(cells));
    }
    if !wifi.is_empty() {
        o.insert("wifiAccessPoints".into(), Value::Array(wifi));
    }
    Value::Object(o)
}

/// A `/v2/geosubmit` body.
pub fn geosubmit(items: &[RadioItem]) -> Vec<u8> {
    let body = json!({"items": items.iter().map(geosubmit_item).collect::<Vec<_>>()});
    body.to_string().into_bytes()
}

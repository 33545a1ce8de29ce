//! Ichnaea's geosubmit bodies: v2 (mozilla/ichnaea `docs/api/geosubmit2.rst`) and the flat v1
//! (`docs/api/geosubmit.rst`). Read as leniently as Ichnaea reads them (`ichnaea/api/submit/`
//! `schema.py`, `schema_v1.py`): unknown fields are ignored and `null` is absent; and, for what
//! real clients send, numbers may be floats or strings.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::validate::{
    Checker, Raw, RawBlue, RawCell, RawEmitter, RawFix, RawWifi, float_text, int_text, time_millis,
    time_text, whole,
};
use super::{RadioBatch, RadioError, RadioPolicy, RadioRejection, RadioType};

/// Reads a `/v2/geosubmit` body: `{"items": [{"timestamp", "position": {...}, "cellTowers": [...],
/// "wifiAccessPoints": [...], "bluetoothBeacons": [...]}]}`.
pub fn parse_geosubmit_v2(
    bytes: &[u8],
    received_at: DateTime<Utc>,
    policy: &RadioPolicy,
) -> Result<RadioBatch, RadioError> {
    parse(bytes, received_at, policy, fix_v2)
}

/// Reads a `/v1/geosubmit` body, whose items carry the position's fields themselves
/// (`latitude`/`lat`, `longitude`/`lon`, `accuracy`, `altitude`, `heading`, `speed`,
/// `timestamp`/`time`, and a `radioType` for their cells).
pub fn parse_geosubmit_v1(
    bytes: &[u8],
    received_at: DateTime<Utc>,
    policy: &RadioPolicy,
) -> Result<RadioBatch, RadioError> {
    parse(bytes, received_at, policy, fix_v1)
}

type Object = Map<String, Value>;

fn parse(
    bytes: &[u8],
    received_at: DateTime<Utc>,
    policy: &RadioPolicy,
    read_fix: fn(&Object) -> RawFix,
) -> Result<RadioBatch, RadioError> {
    let root: Value = serde_json::from_slice(bytes).map_err(|e| RadioError::NotJson {
        detail: e.to_string(),
    })?;
    let items = match &root {
        Value::Object(o) => match o.get("items") {
            Some(Value::Array(items)) => items,
            None | Some(Value::Null) => return Err(invalid("the body has no \"items\" array")),
            Some(other) => {
                return Err(invalid(format!(
                    "\"items\" is {}, not an array",
                    kind(other)
                )));
            }
        },
        other => {
            return Err(invalid(format!(
                "the body is {}, not an object with an \"items\" array",
                kind(other)
            )));
        }
    };
    if items.len() > policy.max_items {
        return Err(RadioError::TooManyItems {
            count: items.len(),
            max: policy.max_items,
        });
    }
    // Emitters are what become rows: bound them too, whatever the items hold.
    let heard: usize = items
        .iter()
        .filter_map(Value::as_object)
        .flat_map(|o| ["cellTowers", "wifiAccessPoints", "bluetoothBeacons"].map(|k| o.get(k)))
        .map(|v| v.and_then(Value::as_array).map_or(0, Vec::len))
        .sum();
    if heard > policy.max_observations {
        return Err(RadioError::TooManyObservations {
            count: heard,
            max: policy.max_observations,
        });
    }
    let mut checker = Checker::new(received_at, policy);
    for (i, item) in items.iter().enumerate() {
        let Value::Object(item) = item else {
            checker.reject(
                i,
                None,
                RadioRejection::UnparsableRow,
                format!("the item is {}, not an object", kind(item)),
            );
            continue;
        };
        checker.check_item(i, read_fix(item), emitters(item));
    }
    Ok(checker.finish(items.len()))
}

fn invalid(detail: impl Into<String>) -> RadioError {
    RadioError::InvalidGeosubmit {
        field: "items",
        detail: detail.into(),
    }
}

fn fix_v2(item: &Object) -> RawFix {
    let time = timestamp(item.get("timestamp"));
    match item.get("position") {
        None | Some(Value::Null) => RawFix {
            time,
            ..RawFix::default()
        },
        Some(Value::Object(p)) => RawFix {
            lat: float(p.get("latitude")),
            lon: float(p.get("longitude")),
            time,
            position_age_ms: int(p.get("age")),
            accuracy_m: float(p.get("accuracy")),
            altitude_m: float(p.get("altitude")),
            heading_deg: float(p.get("heading")),
            speed_mps: float(p.get("speed")),
            ..RawFix::default()
        },
        Some(other) => {
            let bad = format!("position is {}, not an object", kind(other));
            RawFix {
                lat: Err(bad.clone()),
                lon: Err(bad),
                time,
                ..RawFix::default()
            }
        }
    }
}

/// Ichnaea's v1 schema calls the fields `lat`, `lon` and `time` inside and takes the names of
/// the public docs too (`ichnaea/api/submit/schema_v1.py`); so do we.
fn fix_v1(item: &Object) -> RawFix {
    RawFix {
        lat: float(first(item, &["latitude", "lat"])),
        lon: float(first(item, &["longitude", "lon"])),
        time: timestamp(first(item, &["timestamp", "time"])),
        position_age_ms: int(item.get("age")),
        accuracy_m: float(item.get("accuracy")),
        altitude_m: float(item.get("altitude")),
        heading_deg: float(item.get("heading")),
        speed_mps: float(item.get("speed")),
        ..RawFix::default()
    }
}

fn first<'a>(o: &'a Object, names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .filter_map(|n| o.get(*n))
        .find(|v| !v.is_null())
}

fn emitters(item: &Object) -> Vec<RawEmitter> {
    // A report's `radioType` stands for its cells that lack one (`ReportSchema.deserialize`).
    let top_radio = item.get("radioType").and_then(Value::as_str);
    let mut out = Vec::new();
    read_list(item, "cellTowers", &mut out, |o| {
        RawEmitter::Cell(cell(o, top_radio))
    });
    read_list(item, "wifiAccessPoints", &mut out, |o| {
        RawEmitter::Wifi(wifi(o))
    });
    read_list(item, "bluetoothBeacons", &mut out, |o| {
        RawEmitter::Blue(blue(o))
    });
    out
}

fn read_list(
    item: &Object,
    name: &str,
    out: &mut Vec<RawEmitter>,
    read: impl Fn(&Object) -> RawEmitter,
) {
    match item.get(name) {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => out.extend(entries.iter().map(|e| match e {
            Value::Object(o) => read(o),
            other => RawEmitter::Refused(
                RadioRejection::UnparsableRow,
                format!("an entry of {name} is {}, not an object", kind(other)),
            ),
        })),
        Some(other) => out.push(RawEmitter::Refused(
            RadioRejection::UnparsableRow,
            format!("{name} is {}, not an array", kind(other)),
        )),
    }
}

fn cell(o: &Object, top_radio: Option<&str>) -> RawCell {
    let radio = match o.get("radioType") {
        Some(Value::String(s)) if !s.trim().is_empty() => radio(s),
        None | Some(Value::Null | Value::String(_)) => match top_radio {
            Some(t) => radio(t),
            // Tower Collector sends `"radioType": null` for a network it cannot name.
            None => Err("the radioType is missing".to_owned()),
        },
        Some(other) => Err(format!("the radioType is {}", kind(other))),
    };
    RawCell {
        radio,
        mcc: code(o, "mobileCountryCode", "mobileCountryCodeStr"),
        mnc: code(o, "mobileNetworkCode", "mobileNetworkCodeStr"),
        area: int(o.get("locationAreaCode")),
        cid: int(o.get("cellId")),
        psc: int(o.get("primaryScramblingCode")),
        signal: int(o.get("signalStrength")),
        asu: int(o.get("asu")),
        ta: int(o.get("timingAdvance")),
        age_ms: int(o.get("age")),
    }
}

/// NeoStumbler sends each code twice, as a number and as text that keeps its leading zeros
/// (mjaakko/NeoStumbler `ichnaea/dto/CellTowerDto.kt`: `mobileCountryCodeStr`, and the number is
/// null when the text is not numeric); the number is read first, the text when it is missing.
fn code(o: &Object, number: &str, text: &str) -> Raw<i64> {
    match int(o.get(number)) {
        Ok(None) => int(o.get(text)),
        other => other,
    }
}

/// Ichnaea's radio names (`RADIO_STRINGS` in `ichnaea/api/submit/schema.py`), with its legacy
/// `umts` read as `wcdma` as `ReportSchema` does, plus `nr`, which NeoStumbler and Tower Collector
/// send for 5G. `cdma` is known and refused, as Ichnaea refuses it.
fn radio(name: &str) -> Result<RadioType, String> {
    match name.trim().to_ascii_lowercase().as_str() {
        "gsm" => Ok(RadioType::Gsm),
        "wcdma" | "umts" => Ok(RadioType::Wcdma),
        "lte" => Ok(RadioType::Lte),
        "nr" => Ok(RadioType::Nr),
        "cdma" => Err("radioType cdma: CDMA cells are not mapped (nor does Ichnaea)".to_owned()),
        other => Err(format!("unknown radioType {other:?}")),
    }
}

fn wifi(o: &Object) -> RawWifi {
    RawWifi {
        ssid: o.get("ssid").and_then(Value::as_str).map(str::to_owned),
        channel: int(o.get("channel")),
        frequency: int(o.get("frequency")),
        signal: int(o.get("signalStrength")),
        age_ms: int(o.get("age")),
        ..RawWifi::new(text(o.get("macAddress")))
    }
}

fn blue(o: &Object) -> RawBlue {
    RawBlue {
        mac: text(o.get("macAddress")),
        signal: int(o.get("signalStrength")),
        age_ms: int(o.get("age")),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn int(v: Option<&Value>) -> Raw<i64> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(f)) => whole(f).map(Some),
            (None, None) => Err(format!("{n} is not a number")),
        },
        Some(Value::String(s)) => int_text(s),
        Some(other) => Err(format!("{} is not a number", kind(other))),
    }
}

fn float(v: Option<&Value>) -> Raw<f64> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("{n} is not a number")),
        Some(Value::String(s)) => float_text(s),
        Some(other) => Err(format!("{} is not a number", kind(other))),
    }
}

fn text(v: Option<&Value>) -> Raw<String> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("{} where text is expected", kind(other))),
    }
}

/// Milliseconds since 1970 as a number or numeric string; v1's `time` may also be an ISO 8601
/// string (`UnixTimeFromString`, `ichnaea/api/schema.py`).
fn timestamp(v: Option<&Value>) -> Raw<DateTime<Utc>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            let ms = match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => i,
                (None, Some(f)) => whole(f.trunc())?,
                (None, None) => return Err(format!("{n} is not a time")),
            };
            time_millis(ms).map(Some)
        }
        Some(Value::String(s)) => match int_text(s) {
            Ok(Some(ms)) => time_millis(ms).map(Some),
            Ok(None) => Ok(None),
            Err(_) => time_text(s),
        },
        Some(other) => Err(format!("the timestamp is {}", kind(other))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::radio::Emitter;
    use RadioRejection as R;
    use chrono::TimeZone;
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
    }

    fn ms(minutes_ago: i64) -> i64 {
        now().timestamp_millis() - minutes_ago * 60_000
    }

    fn v2(body: Value) -> RadioBatch {
        parse_geosubmit_v2(
            &serde_json::to_vec(&body).unwrap(),
            now(),
            &RadioPolicy::default(),
        )
        .unwrap()
    }

    fn reasons(b: &RadioBatch) -> Vec<RadioRejection> {
        b.rejected.iter().map(|r| r.reason).collect()
    }

    #[test]
    fn whole_body_errors_name_the_field() {
        let p = RadioPolicy::default();
        let err = |body: &[u8]| parse_geosubmit_v2(body, now(), &p).unwrap_err();
        assert_eq!(err(b"{\"items\": [").code(), "not_json");
        assert_eq!(err(b"").code(), "not_json");
        for body in [&b"[]"[..], b"{}", b"{\"items\": null}", b"{\"items\": {}}"] {
            let e = err(body);
            assert_eq!((e.code(), e.field()), ("invalid_geosubmit", Some("items")));
        }
        let small = RadioPolicy {
            max_items: 2,
            ..RadioPolicy::default()
        };
        let e = parse_geosubmit_v2(b"{\"items\": [{}, {}, {}]}", now(), &small).unwrap_err();
        assert_eq!(e, RadioError::TooManyItems { count: 3, max: 2 });
        assert_eq!(e.code(), "too_many_items");
        let b = v2(json!({"items": []}));
        assert_eq!((b.items, b.observations.len(), b.rejected.len()), (0, 0, 0));
    }

    #[test]
    fn nulls_unknown_fields_strings_and_floats_are_read_leniently() {
        let b = v2(json!({
            "apiVersion": 2,
            "items": [{
                "timestamp": ms(5).to_string(),
                "connection": {"ip": "192.0.2.1"},
                "position": {
                    "latitude": "48.8566", "longitude": 2.3522, "accuracy": null,
                    "altitude": 35, "heading": null, "speed": "3.5", "source": "fused",
                    "somethingNew": [1, 2]
                },
                "cellTowers": [{
                    "radioType": "LTE", "mobileCountryCode": 208.0, "mobileNetworkCode": "01",
                    "locationAreaCode": "1234", "cellId": 56789, "signalStrength": "-95",
                    "asu": null, "primaryScramblingCode": null, "serving": 1, "extra": true
                }],
                "wifiAccessPoints": null,
                "bluetoothBeacons": [{"macAddress": "AA:BB:CC:00:11:22", "name": null}]
            }]
        }));
        assert!(b.rejected.is_empty() && b.corrections.is_empty(), "{b:?}");
        let keys: Vec<_> = b
            .observations
            .iter()
            .map(super::super::RadioObservation::emitter_key)
            .collect();
        assert_eq!(keys, vec!["lte:208:1:1234:56789", "ble:aabbcc001122"]);
        let o = &b.observations[0];
        assert_eq!(o.at.timestamp_millis(), ms(5));
        assert_eq!(
            (
                o.pos.lat,
                o.altitude_m,
                o.speed_mps,
                o.accuracy_m,
                o.signal_dbm
            ),
            (48.8566, Some(35.0), Some(3.5), None, Some(-95))
        );
    }

    #[test]
    fn a_missing_timestamp_is_the_upload_time_and_report_radio_types_apply_to_cells() {
        let b = v2(json!({"items": [{
            "position": {"latitude": 48.85, "longitude": 2.35},
            "radioType": "umts",
            "cellTowers": [
                {"mobileCountryCode": 208, "mobileNetworkCode": 1, "locationAreaCode": 2,
                 "cellId": 12345},
                {"radioType": "gsm", "mobileCountryCode": 208, "mobileNetworkCode": 1,
                 "locationAreaCode": 2, "cellId": 123},
                {"radioType": "cdma", "mobileCountryCode": 310, "mobileNetworkCode": 1,
                 "locationAreaCode": 2, "cellId": 3}
            ]
        }]}));
        let keys: Vec<_> = b
            .observations
            .iter()
            .map(super::super::RadioObservation::emitter_key)
            .collect();
        assert_eq!(keys, vec!["wcdma:208:1:2:12345", "gsm:208:1:2:123"]);
        assert_eq!(b.observations[0].at, now());
        assert_eq!(reasons(&b), vec![R::UnknownRadio]);
    }

    #[test]
    fn malformed_items_and_entries_are_rejected_not_dropped() {
        let b = v2(json!({"items": [
            "not an item",
            {"position": {"latitude": 48.85, "longitude": 2.35}},
            {"position": {"latitude": 48.85, "longitude": 2.35},
             "cellTowers": {"radioType": "lte"}, "wifiAccessPoints": [null, 7,
                {"macAddress": "00:11:22:33:44:55", "signalStrength": -70}]},
            {"position": [48.85, 2.35], "wifiAccessPoints": [{"macAddress": "001122334455"}]},
            {"position": {"latitude": 48.85}, "wifiAccessPoints": [{"macAddress": 17}]}
        ]}));
        assert_eq!(b.items, 5);
        assert_eq!(
            reasons(&b),
            vec![
                R::UnparsableRow,
                R::NoEmitters,
                R::UnparsableRow,
                R::UnparsableRow,
                R::UnparsableRow,
                R::BadPosition,
                R::NoPosition,
            ]
        );
        let items: Vec<_> = b.rejected.iter().map(|r| r.item).collect();
        assert_eq!(items, vec![0, 1, 2, 2, 2, 3, 4]);
        assert_eq!(b.rejected[5].emitter.as_deref(), Some("wifi:001122334455"));
        assert_eq!(b.observations.len(), 1);
    }

    #[test]
    fn v1_items_carry_the_position_themselves() {
        let body = json!({"items": [
            {"lat": 48.8566, "lon": 2.3522, "time": "2026-11-01T11:50:00Z", "accuracy": 12,
             "radioType": "gsm",
             "cellTowers": [{"mobileCountryCode": 208, "mobileNetworkCode": 10,
                             "locationAreaCode": 7, "cellId": 99}],
             "wifiAccessPoints": [{"macAddress": "00-11-22-33-44-55", "frequency": 2412,
                                   "ssid": "Cafe"}]},
            {"latitude": 48.8566, "longitude": 2.3522, "timestamp": ms(1),
             "altitudeAccuracy": 5, "cellTowers": []}
        ]});
        let b = parse_geosubmit_v1(
            &serde_json::to_vec(&body).unwrap(),
            now(),
            &RadioPolicy::default(),
        )
        .unwrap();
        let keys: Vec<_> = b
            .observations
            .iter()
            .map(super::super::RadioObservation::emitter_key)
            .collect();
        assert_eq!(keys, vec!["gsm:208:10:7:99", "wifi:001122334455"]);
        assert_eq!(b.observations[0].at, now() - chrono::TimeDelta::minutes(10));
        assert_eq!(b.observations[0].accuracy_m, Some(12.0));
        assert!(matches!(
            &b.observations[1].emitter,
            Emitter::Wifi { channel: Some(1), frequency_mhz: Some(2412), ssid: Some(s), .. }
                if s == "Cafe"
        ));
        assert_eq!(reasons(&b), vec![R::NoEmitters]);
    }

    #[test]
    fn emitters_are_bounded_across_items() {
        let wifi: Vec<_> = (0..30)
            .map(|i| json!({"macAddress": format!("1cb72c0000{i:02x}")}))
            .collect();
        let body = json!({"items": [{"position": {"latitude": 43.7, "longitude": 7.4},
                                     "wifiAccessPoints": wifi}]});
        let policy = RadioPolicy {
            max_observations: 29,
            ..RadioPolicy::default()
        };
        let err = parse_geosubmit_v2(body.to_string().as_bytes(), now(), &policy).unwrap_err();
        assert_eq!(
            (err.code(), err.field()),
            ("too_many_observations", Some("items"))
        );
    }
}

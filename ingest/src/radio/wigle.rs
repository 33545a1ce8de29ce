//! WiGLE CSV 1.4 and 1.6 as the WiGLE Android app writes it (wiglenet/wigle-wifi-wardriving,
//! `background/ObservationUploader.java`): a pre-header line `WigleWifi-1.6,appRelease=...,
//! model=...`, then the column header, then one row per emitter sighting.
//!
//! - 1.4: `MAC,SSID,AuthMode,FirstSeen,Channel,RSSI,CurrentLatitude,CurrentLongitude,
//!   AltitudeMeters,AccuracyMeters,Type`
//! - 1.6: `MAC,SSID,AuthMode,FirstSeen,Channel,Frequency,RSSI,CurrentLatitude,CurrentLongitude,
//!   AltitudeMeters,AccuracyMeters,RCOIs,MfgrId,Type` (`CSV_COLUMN_HEADERS`)
//!
//! Columns are found by name, so other writers' orders read too. Type is one of WiGLE's
//! `NetworkType` names (`model/NetworkType.java`): WIFI, GSM, CDMA, LTE, WCDMA, NR, BT, BLE, NFC.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use csv::{ByteRecord, ReaderBuilder};

use super::validate::{
    Checker, Raw, RawBlue, RawCell, RawEmitter, RawFix, RawWifi, float_text, int_text, time_text,
    unknown_if_zero,
};
use super::{RadioBatch, RadioError, RadioPolicy, RadioRejection, RadioType};

/// WiGLE 1.4 wrote FirstSeen in the device's own zone, without saying which (the 1.4
/// `ObservationUploader.java` used `new SimpleDateFormat("yyyy-MM-dd HH:mm:ss")` with no zone);
/// 1.6 writes UTC (`dateFormat.setTimeZone(TimeZone.getTimeZone("UTC"))`). A 1.4 time is read as
/// UTC, so it may be as far ahead as the furthest zone, UTC+14.
const LOCAL_TIME_SLACK: Duration = Duration::from_secs(14 * 3600);

const FORMAT: &str = "WiGLE";

struct Columns {
    mac: usize,
    ssid: Option<usize>,
    first_seen: usize,
    channel: Option<usize>,
    frequency: Option<usize>,
    rssi: Option<usize>,
    lat: usize,
    lon: usize,
    altitude: Option<usize>,
    accuracy: Option<usize>,
    kind: usize,
}

impl Columns {
    fn find(header: &ByteRecord) -> Result<Self, RadioError> {
        let names: Vec<String> = header
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase())
            .collect();
        let find = |name: &str| names.iter().position(|n| n == &name.to_ascii_lowercase());
        let need = |name: &'static str| {
            find(name).ok_or_else(|| RadioError::InvalidHeader {
                format: FORMAT,
                column: Some(name),
                detail: format!("the column header has no {name}: {}", names.join(",")),
            })
        };
        Ok(Self {
            mac: need("MAC")?,
            ssid: find("SSID"),
            first_seen: need("FirstSeen")?,
            channel: find("Channel"),
            frequency: find("Frequency"),
            rssi: find("RSSI"),
            lat: need("CurrentLatitude")?,
            lon: need("CurrentLongitude")?,
            altitude: find("AltitudeMeters"),
            accuracy: find("AccuracyMeters"),
            kind: need("Type")?,
        })
    }
}

/// Reads a WiGLE CSV file; row `i` of the batch is the `i`-th line after the column header.
pub fn parse_wigle_csv(
    bytes: &[u8],
    received_at: DateTime<Utc>,
    policy: &RadioPolicy,
) -> Result<RadioBatch, RadioError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(RadioError::NotCsv {
            detail: "the file is empty".to_owned(),
        });
    }
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let pre = String::from_utf8_lossy(&bytes[..end]);
    let pre = pre.trim_end_matches('\r');
    let version = pre.split(',').next().unwrap_or_default().trim();
    let Some(number) = version.strip_prefix("WigleWifi-") else {
        let shown: String = pre.chars().take(80).collect();
        return Err(RadioError::InvalidHeader {
            format: FORMAT,
            column: None,
            detail: format!(
                "the first line must be WiGLE's pre-header `WigleWifi-1.6,appRelease=...`, \
                 not {shown:?}"
            ),
        });
    };
    let zoned = version_at_least(number, (1, 6));
    let rest = bytes.get(end + 1..).unwrap_or_default();

    let mut reader = ReaderBuilder::new().flexible(true).from_reader(rest);
    let header = reader
        .byte_headers()
        .map_err(|e| RadioError::NotCsv {
            detail: e.to_string(),
        })?
        .clone();
    if header.is_empty() {
        return Err(RadioError::InvalidHeader {
            format: FORMAT,
            column: Some("MAC"),
            detail: "the column header line is missing".to_owned(),
        });
    }
    let cols = Columns::find(&header)?;

    let mut checker = Checker::new(received_at, policy);
    let mut record = ByteRecord::new();
    let mut row = 0;
    loop {
        let read = reader.read_byte_record(&mut record);
        if matches!(read, Ok(false)) {
            break;
        }
        if row >= policy.max_rows {
            return Err(RadioError::TooManyRows {
                max: policy.max_rows,
            });
        }
        match read {
            Ok(_) => {
                let (fix, emitter) = read_row(&record, &cols, zoned);
                checker.check_item(row, fix, vec![emitter]);
            }
            Err(e) => checker.reject(row, None, RadioRejection::UnparsableRow, e.to_string()),
        }
        row += 1;
    }
    Ok(checker.finish(row))
}

fn version_at_least(number: &str, want: (u32, u32)) -> bool {
    let mut parts = number.trim().split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= want,
        _ => false,
    }
}

fn field(record: &ByteRecord, i: Option<usize>) -> Cow<'_, str> {
    i.and_then(|i| record.get(i))
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
}

fn read_row(record: &ByteRecord, cols: &Columns, zoned: bool) -> (RawFix, RawEmitter) {
    let at = |i: usize| field(record, Some(i));
    let fix = RawFix {
        lat: float_text(&at(cols.lat)),
        lon: float_text(&at(cols.lon)),
        time: time_text(&at(cols.first_seen)),
        altitude_m: float_text(&field(record, cols.altitude)),
        // WiGLE and Kismet write 0 for an accuracy they do not know.
        accuracy_m: unknown_if_zero(float_text(&field(record, cols.accuracy))),
        future_slack: if zoned {
            Duration::ZERO
        } else {
            LOCAL_TIME_SLACK
        },
        ..RawFix::default()
    };
    let mac = at(cols.mac);
    let rssi = int_text(&field(record, cols.rssi));
    let kind = at(cols.kind).trim().to_ascii_uppercase();
    let emitter = match kind.as_str() {
        "WIFI" => RawEmitter::Wifi(wifi(record, cols, &mac, rssi)),
        "BT" | "BLE" => RawEmitter::Blue(RawBlue {
            mac: Ok(Some(mac.into_owned())),
            signal: rssi,
            age_ms: Ok(None),
        }),
        "GSM" => cell(RadioType::Gsm, &mac, rssi),
        "WCDMA" => cell(RadioType::Wcdma, &mac, rssi),
        "LTE" => cell(RadioType::Lte, &mac, rssi),
        "NR" => cell(RadioType::Nr, &mac, rssi),
        "CDMA" => RawEmitter::Refused(
            RadioRejection::UnknownRadio,
            format!("CDMA cell {mac:?} (SID_NID_BID): CDMA is not mapped"),
        ),
        "" => RawEmitter::Refused(RadioRejection::UnknownRadio, "the Type is empty".to_owned()),
        other => RawEmitter::Refused(
            RadioRejection::UnknownRadio,
            format!("WiGLE type {other:?} is not a radio that is mapped"),
        ),
    };
    (fix, emitter)
}

fn wifi(record: &ByteRecord, cols: &Columns, mac: &str, rssi: Raw<i64>) -> RawWifi {
    let mut channel = int_text(&field(record, cols.channel));
    let mut frequency = int_text(&field(record, cols.frequency));
    // 1.4 writers put the frequency in Channel when they had no channel
    // (`if (channel == null) channel = network.getFrequency()`).
    if let Ok(Some(c)) = channel
        && c >= 2400
    {
        if matches!(frequency, Ok(None)) {
            frequency = Ok(Some(c));
        }
        channel = Ok(None);
    }
    let ssid = field(record, cols.ssid).into_owned();
    RawWifi {
        ssid: Some(ssid),
        channel,
        frequency,
        signal: rssi,
        ..RawWifi::new(Ok(Some(mac.to_owned())))
    }
}

/// WiGLE keys a cell `{MCC}{MNC}_{LAC}_{CID}` in the MAC column (`GsmOperator.getOperatorKeyString`
/// in `model/GsmOperator.java`): the MCC is always 3 digits and the MNC 2 or 3. SSID holds the
/// operator's name and Channel the ARFCN/UARFCN/EARFCN/NRARFCN; neither is part of the identity.
fn cell(radio: RadioType, key: &str, rssi: Raw<i64>) -> RawEmitter {
    let parts: Vec<&str> = key.trim().split('_').collect();
    match parts.as_slice() {
        [operator, area, cid]
            if (5..=6).contains(&operator.len())
                && operator.bytes().all(|b| b.is_ascii_digit()) =>
        {
            let (mcc, mnc) = operator.split_at(3);
            RawEmitter::Cell(RawCell {
                mcc: int_text(mcc),
                mnc: int_text(mnc),
                area: int_text(area),
                cid: int_text(cid),
                signal: rssi,
                ..RawCell::new(Ok(radio))
            })
        }
        _ => RawEmitter::Refused(
            RadioRejection::BadCellId,
            format!("{key:?} is not WiGLE's MCCMNC_LAC_CID cell key"),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use RadioRejection as R;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
    }

    fn parse(text: &str) -> Result<RadioBatch, RadioError> {
        parse_wigle_csv(text.as_bytes(), now(), &RadioPolicy::default())
    }

    const PRE_16: &str = "WigleWifi-1.6,appRelease=2.70,model=Pixel 7,release=14,device=panther,\
                          display=UQ1A,board=panther,brand=google,star=Sol,body=3,subBody=0\n";
    const HEADER_16: &str = "MAC,SSID,AuthMode,FirstSeen,Channel,Frequency,RSSI,CurrentLatitude,\
                             CurrentLongitude,AltitudeMeters,AccuracyMeters,RCOIs,MfgrId,Type\n";

    #[test]
    fn header_errors() {
        let e = parse("MAC,SSID\n").unwrap_err();
        assert_eq!((e.code(), e.field()), ("invalid_header", None));
        let e = parse(&format!(
            "{PRE_16}MAC,SSID,FirstSeen,CurrentLatitude,Type\n"
        ))
        .unwrap_err();
        assert_eq!(
            (e.code(), e.field()),
            ("invalid_header", Some("CurrentLongitude"))
        );
        let e = parse(PRE_16).unwrap_err();
        assert_eq!(e.code(), "invalid_header");
        assert_eq!(parse("").unwrap_err().code(), "not_csv");
    }

    #[test]
    fn rows_past_the_limit_refuse_the_file() {
        let row =
            "00:11:22:33:44:55,x,[ESS],2026-11-01 11:00:00,6,2437,-70,48.85,2.35,30,5,,,WIFI\n";
        let text = format!("{PRE_16}{HEADER_16}{}", row.repeat(3));
        let p = RadioPolicy {
            max_rows: 2,
            ..RadioPolicy::default()
        };
        let e = parse_wigle_csv(text.as_bytes(), now(), &p).unwrap_err();
        assert_eq!(e, RadioError::TooManyRows { max: 2 });
        let p = RadioPolicy {
            max_rows: 3,
            ..RadioPolicy::default()
        };
        assert_eq!(
            parse_wigle_csv(text.as_bytes(), now(), &p).unwrap().items,
            3
        );
    }

    #[test]
    fn odd_rows() {
        let text = format!(
            "{PRE_16}{HEADER_16}\
             310260_12345,T-Mobile,LTE;us,2026-11-01 11:00:00,5110,0,-101,47.6,-122.3,40,8,,,LTE\n\
             4_2_3,Sprint,CDMA;us,2026-11-01 11:00:00,0,0,-90,47.6,-122.3,40,8,,,CDMA\n\
             aa:bb:cc:dd:ee:ff,,Misc,2026-11-01 11:00:00,0,0,-60,47.6,-122.3,40,8,,,NFC\n\
             00:11:22:33:44:55,short row\n\
             00:11:22:33:44:66,cafe,[ESS],yesterday,6,2437,-70,47.6,-122.3,40,8,,,WIFI\n"
        );
        let b = parse(&text).unwrap();
        let why: Vec<_> = b.rejected.iter().map(|r| r.reason).collect();
        assert_eq!(
            why,
            vec![
                R::BadCellId,
                R::UnknownRadio,
                R::UnknownRadio,
                // The short row has no position either, and the item's reason comes first.
                R::NoPosition,
                R::BadTime
            ]
        );
        assert_eq!(b.items, 5);
        assert!(b.observations.is_empty());
    }

    #[test]
    fn version_numbers() {
        assert!(version_at_least("1.6", (1, 6)));
        assert!(version_at_least("2.0", (1, 6)));
        assert!(!version_at_least("1.4", (1, 6)));
        assert!(!version_at_least("x", (1, 6)));
    }
}

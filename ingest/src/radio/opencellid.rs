//! OpenCelliD measurement CSV: one row per cell measurement, columns found by name, so both real
//! header orders read the same:
//!
//! - OpenCelliD's own upload format (wiki.opencellid.org/wiki/API, "Uploading measurements"):
//!   `mcc,mnc,lac,cellid,lon,lat,signal,measured_at,rating,speed,direction,act,ta,psc,tac,pci,
//!   sid,nid,bid`
//! - what Tower Collector uploads (zamojski/TowerCollector,
//!   `files/formatters/csv/CsvUploadFormatter.java`, `formatHeader`):
//!   `lat,lon,mcc,mnc,sid,lac,tac,nid,cellid,bid,psc,pci,signal,ta,measured_at,rating,speed,
//!   direction,act,devn`
//!
//! `rating` is the GPS accuracy in metres, `speed` m/s, `direction` the heading; `act` the radio
//! technology. Tower Collector writes the LAC of GSM/UMTS cells in `lac` and the TAC of LTE/NR
//! cells in `tac`, a WCDMA PSC in `psc` and an LTE/NR PCI in `pci`, and CDMA cells' ids in
//! `sid,nid,bid` with `mcc` and `mnc` empty.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use csv::{ByteRecord, ReaderBuilder, Trim};

use super::validate::{
    Checker, Raw, RawCell, RawEmitter, RawFix, float_text, int_text, time_millis, time_text,
    unknown_if_zero,
};
use super::{RadioBatch, RadioError, RadioPolicy, RadioRejection, RadioType};

const FORMAT: &str = "OpenCelliD";

struct Columns {
    mcc: usize,
    mnc: usize,
    lac: Option<usize>,
    tac: Option<usize>,
    cellid: usize,
    lat: usize,
    lon: usize,
    act: usize,
    signal: Option<usize>,
    measured_at: Option<usize>,
    rating: Option<usize>,
    speed: Option<usize>,
    direction: Option<usize>,
    ta: Option<usize>,
    psc: Option<usize>,
    pci: Option<usize>,
    sid: Option<usize>,
}

impl Columns {
    fn find(header: &ByteRecord) -> Result<Self, RadioError> {
        let names: Vec<String> = header
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase())
            .collect();
        let find = |name: &str| names.iter().position(|n| n == name);
        let missing = |name: &'static str, why: &str| RadioError::InvalidHeader {
            format: FORMAT,
            column: Some(name),
            detail: format!("the header has no {name}{why}: {}", names.join(",")),
        };
        // Without `act` the radio, and so the cell's key, is unknown.
        let need = |name: &'static str| find(name).ok_or_else(|| missing(name, ""));
        let mcc = need("mcc")?;
        let mnc = need("mnc")?;
        let lac = find("lac");
        let tac = find("tac");
        if lac.is_none() && tac.is_none() {
            return Err(missing("lac", " (nor tac)"));
        }
        Ok(Self {
            mcc,
            mnc,
            lac,
            tac,
            cellid: need("cellid")?,
            lat: need("lat")?,
            lon: need("lon")?,
            act: need("act")?,
            signal: find("signal"),
            measured_at: find("measured_at"),
            rating: find("rating"),
            speed: find("speed"),
            direction: find("direction"),
            ta: find("ta"),
            psc: find("psc"),
            pci: find("pci"),
            sid: find("sid"),
        })
    }
}

/// Reads an OpenCelliD measurement CSV; row `i` of the batch is the `i`-th line after the header.
pub fn parse_opencellid_csv(
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
    let mut reader = ReaderBuilder::new()
        .flexible(true)
        .trim(Trim::All)
        .from_reader(bytes);
    let header = reader
        .byte_headers()
        .map_err(|e| RadioError::NotCsv {
            detail: e.to_string(),
        })?
        .clone();
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
                let (fix, emitter) = read_row(&record, &cols);
                checker.check_item(row, fix, vec![emitter]);
            }
            Err(e) => checker.reject(row, None, RadioRejection::UnparsableRow, e.to_string()),
        }
        row += 1;
    }
    Ok(checker.finish(row))
}

fn field(record: &ByteRecord, i: Option<usize>) -> Cow<'_, str> {
    i.and_then(|i| record.get(i))
        .map(String::from_utf8_lossy)
        .unwrap_or_default()
}

fn read_row(record: &ByteRecord, cols: &Columns) -> (RawFix, RawEmitter) {
    let at = |i: Option<usize>| field(record, i);
    let fix = RawFix {
        lat: float_text(&at(Some(cols.lat))),
        lon: float_text(&at(Some(cols.lon))),
        time: measured_at(&at(cols.measured_at)),
        // Tower Collector rounds the accuracy to whole metres; 0 says nothing.
        accuracy_m: unknown_if_zero(float_text(&at(cols.rating))),
        speed_mps: float_text(&at(cols.speed)),
        heading_deg: float_text(&at(cols.direction)),
        ..RawFix::default()
    };
    let act = at(Some(cols.act));
    let radio = if act.trim().is_empty() && !at(cols.sid).trim().is_empty() {
        Err("a CDMA measurement (sid, nid, bid): CDMA is not mapped".to_owned())
    } else {
        radio_from_act(&act)
    };
    let lte_like = matches!(radio, Ok(RadioType::Lte | RadioType::Nr));
    let (area, other_area, psc, other_psc) = if lte_like {
        (cols.tac, cols.lac, cols.pci, cols.psc)
    } else {
        (cols.lac, cols.tac, cols.psc, cols.pci)
    };
    let (signal, asu) = signal_or_asu(int_text(&at(cols.signal)));
    let cell = RawCell {
        mcc: int_text(&at(Some(cols.mcc))),
        mnc: int_text(&at(Some(cols.mnc))),
        area: either(int_text(&at(area)), || int_text(&at(other_area))),
        cid: int_text(&at(Some(cols.cellid))),
        psc: either(int_text(&at(psc)), || int_text(&at(other_psc))),
        signal,
        asu,
        ta: int_text(&at(cols.ta)),
        ..RawCell::new(radio)
    };
    (fix, RawEmitter::Cell(cell))
}

fn either(first: Raw<i64>, second: impl FnOnce() -> Raw<i64>) -> Raw<i64> {
    match first {
        Ok(None) => second(),
        other => other,
    }
}

/// `act` names as OpenCelliD lists them (wiki.opencellid.org/wiki/API, "Filtering of data":
/// GSM, GPRS, EDGE, UMTS, HSPA, HSDPA, HSUPA, HSPA+, LTE, LTECATM, NR and the CDMA family) and as
/// Tower Collector writes them (`providers/OpencellidCellUtils.java`: GSM, UMTS, LTE, NR, CDMA,
/// TDSCDMA).
fn radio_from_act(act: &str) -> Result<RadioType, String> {
    match act.trim().to_ascii_uppercase().as_str() {
        "GSM" | "GPRS" | "EDGE" => Ok(RadioType::Gsm),
        "UMTS" | "WCDMA" | "HSPA" | "HSDPA" | "HSUPA" | "HSPA+" | "HSPAP" => Ok(RadioType::Wcdma),
        "LTE" | "LTECATM" => Ok(RadioType::Lte),
        "NR" => Ok(RadioType::Nr),
        "CDMA" | "1XRTT" | "EHRPD" | "IS95A" | "IS95B" | "EVDO_0" | "EVDO_A" | "EVDO_B" => {
            Err(format!("act {act}: CDMA is not mapped"))
        }
        "" => Err("the act is empty: the radio is unknown".to_owned()),
        other => Err(format!("act {other:?} is not a radio that is mapped")),
    }
}

/// OpenCelliD's `signal` holds either unit: Tower Collector writes the ASU when it has one and
/// the dBm otherwise (`CsvUploadFormatter.formatSignal`). They part by sign, as Ichnaea parts a
/// swapped asu from a signal: a dBm reading is negative, an ASU is not.
fn signal_or_asu(v: Raw<i64>) -> (Raw<i64>, Raw<i64>) {
    match v {
        Ok(Some(x)) if x >= 0 => (Ok(None), Ok(Some(x))),
        other => (other, Ok(None)),
    }
}

/// OpenCelliD takes a `timestamp` or `yyyy-MM-dd HH:mm:ss`, `yyyyMMddHHmmss`,
/// `yyyy-MM-dd HH:mm:ss.SSSZ`, `yyyy-MM-dd`, all UTC (wiki.opencellid.org/wiki/API). The
/// timestamp's unit is not stated: 13 digits are read as milliseconds, fewer as seconds.
fn measured_at(s: &str) -> Raw<DateTime<Utc>> {
    let t = s.trim();
    if t.len() != 14 && !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let n = int_text(t)?.unwrap_or_default();
        let ms = if n >= 100_000_000_000 { n } else { n * 1000 };
        return time_millis(ms).map(Some);
    }
    time_text(t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::radio::Emitter;
    use RadioRejection as R;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
    }

    fn parse(text: &str) -> Result<RadioBatch, RadioError> {
        parse_opencellid_csv(text.as_bytes(), now(), &RadioPolicy::default())
    }

    #[test]
    fn header_errors_name_the_column() {
        let e = parse("mcc,mnc,cellid,lon,lat,act\n").unwrap_err();
        assert_eq!((e.code(), e.field()), ("invalid_header", Some("lac")));
        let e = parse("mcc,mnc,lac,cellid,lon,lat,signal\n").unwrap_err();
        assert_eq!((e.code(), e.field()), ("invalid_header", Some("act")));
        let e = parse("WigleWifi-1.6,appRelease=2.70\nMAC,SSID\n").unwrap_err();
        assert_eq!((e.code(), e.field()), ("invalid_header", Some("mcc")));
        assert_eq!(parse("\n").unwrap_err().code(), "not_csv");
    }

    #[test]
    fn signal_is_asu_or_dbm_by_sign_and_codes_come_from_act() {
        let text = "mcc,mnc,lac,cellid,lon,lat,signal,measured_at,rating,speed,direction,act,ta,\
                    psc,tac,pci,sid,nid,bid\n\
                    260,2,10250,26717441,21.0122,52.2297,-95,2026-11-01 11:00:00,5,13,90,LTE,3,,,\
                    220,,,\n\
                    260,2,10250,1234,21.0122,52.2297,20,1793530800000,0,0,0,GSM,,,,,,,\n\
                    ,,,,21.0122,52.2297,-80,1793530800,10,0,0,CDMA,,,,,4,2,3\n\
                    260,2,10250,1234,21.0122,52.2297,20,2026-11-01 11:00:00,5,0,0,TDSCDMA,,,,,,,\n";
        let b = parse(text).unwrap();
        assert_eq!(b.items, 4);
        let why: Vec<_> = b.rejected.iter().map(|r| r.reason).collect();
        assert_eq!(why, vec![R::UnknownRadio, R::UnknownRadio]);
        let lte = &b.observations[0];
        assert_eq!(lte.emitter_key(), "lte:260:2:10250:26717441");
        assert!(matches!(lte.emitter, Emitter::Cell { psc: Some(220), .. }));
        assert_eq!(
            (lte.signal_dbm, lte.asu, lte.timing_advance, lte.accuracy_m),
            (Some(-95), None, Some(3), Some(5.0))
        );
        assert_eq!((lte.speed_mps, lte.heading_deg), (Some(13.0), Some(90.0)));
        let gsm = &b.observations[1];
        assert_eq!(
            (gsm.signal_dbm, gsm.asu, gsm.accuracy_m),
            (Some(-73), Some(20), None)
        );
        assert_eq!(gsm.at, Utc.with_ymd_and_hms(2026, 11, 1, 11, 0, 0).unwrap());
    }

    #[test]
    fn measured_at_units() {
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 11, 0, 0).unwrap();
        assert_eq!(measured_at("1793530800"), Ok(Some(t)));
        assert_eq!(measured_at("1793530800000"), Ok(Some(t)));
        assert_eq!(measured_at("20261101110000"), Ok(Some(t)));
        assert_eq!(measured_at("2026-11-01 11:00:00.000Z"), Ok(Some(t)));
        assert_eq!(measured_at(""), Ok(None));
    }
}

//! The radio parsers on real files (Ichnaea's documentation examples, read in place) and on bodies
//! and files shaped exactly as real clients write them, each built from the client's source.
#![allow(clippy::unwrap_used, clippy::panic)]

use chrono::{DateTime, TimeZone, Utc};
use covermap_ingest::radio::{
    Emitter, RadioBatch, RadioError, RadioPolicy, RadioRejection, RadioType, parse_geosubmit_v1,
    parse_geosubmit_v2, parse_opencellid_csv, parse_wigle_csv,
};
use serde_json::json;

const GEOSUBMIT2: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/radio/geosubmit/ichnaea_geosubmit2_doc_example.json"
);
const GEOSUBMIT1: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../testdata/radio/geosubmit/ichnaea_geosubmit1_doc_example.json"
);

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn ms(t: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t).unwrap()
}

/// Five minutes after the examples' timestamp, 1405602028568 (2014-07-17T13:00:28.568Z).
fn example_received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2014, 7, 17, 13, 5, 0).unwrap()
}

fn csv_received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn keys(b: &RadioBatch) -> Vec<String> {
    b.observations
        .iter()
        .map(covermap_ingest::radio::RadioObservation::emitter_key)
        .collect()
}

fn rejected(b: &RadioBatch) -> Vec<(usize, Option<&str>, RadioRejection)> {
    b.rejected
        .iter()
        .map(|r| (r.item, r.emitter.as_deref(), r.reason))
        .collect()
}

/// Every emitter ends in exactly one list.
fn assert_accounted(b: &RadioBatch, emitters: usize) {
    assert_eq!(b.observations.len() + b.rejected.len(), emitters, "{b:#?}");
}

#[test]
fn ichnaea_geosubmit2_doc_example() {
    let b = parse_geosubmit_v2(
        &read(GEOSUBMIT2),
        example_received(),
        &RadioPolicy::default(),
    )
    .unwrap();
    assert_eq!(b.items, 1);
    assert_accounted(&b, 4);
    assert_eq!(keys(&b), vec!["lte:208:1:2:12345", "ble:ff23456789ab"]);
    let cell = &b.observations[0];
    // timestamp 1405602028568 less the position's age of 1000 ms.
    assert_eq!(cell.at, ms(1_405_602_027_568));
    assert_eq!((cell.pos.lat, cell.pos.lon), (-22.7539192, -43.4371081));
    assert_eq!(
        (
            cell.accuracy_m,
            cell.altitude_m,
            cell.heading_deg,
            cell.speed_mps
        ),
        (Some(10.0), Some(100.0), Some(45.0), Some(3.6))
    );
    assert_eq!(
        cell.emitter,
        Emitter::Cell {
            radio: RadioType::Lte,
            mcc: 208,
            mnc: 1,
            area: 2,
            cid: 12345,
            psc: Some(5),
        }
    );
    assert_eq!(
        (cell.signal_dbm, cell.asu, cell.timing_advance, cell.age_ms),
        (Some(-51), Some(31), Some(1), Some(2000))
    );
    let beacon = &b.observations[1];
    assert_eq!(
        (beacon.at, beacon.signal_dbm, beacon.age_ms),
        (ms(1_405_602_027_568), Some(-110), Some(1000))
    );
    // Both example BSSIDs have the group bit set (0x01, 0x23): made up, not an AP's.
    assert_eq!(
        rejected(&b),
        vec![
            (0, Some("wifi:0123456789ab"), RadioRejection::BadMac),
            (0, Some("wifi:23456789abcd"), RadioRejection::BadMac),
        ]
    );
    assert!(b.corrections.is_empty(), "{:?}", b.corrections);
}

#[test]
fn ichnaea_geosubmit1_doc_example() {
    let bytes = read(GEOSUBMIT1);
    let b = parse_geosubmit_v1(&bytes, example_received(), &RadioPolicy::default()).unwrap();
    assert_accounted(&b, 4);
    assert_eq!(keys(&b), vec!["gsm:208:1:2:12345", "ble:ff7427895a77"]);
    let cell = &b.observations[0];
    assert_eq!(cell.at, ms(1_405_602_028_568));
    assert_eq!((cell.pos.lat, cell.pos.lon), (-22.7539192, -43.4371081));
    assert_eq!(
        (
            cell.accuracy_m,
            cell.altitude_m,
            cell.heading_deg,
            cell.speed_mps
        ),
        (Some(10.0), Some(100.0), Some(45.0), Some(3.6))
    );
    assert_eq!(
        (cell.signal_dbm, cell.asu, cell.timing_advance, cell.age_ms),
        (Some(-51), Some(31), Some(1), Some(3))
    );
    assert!(matches!(cell.emitter, Emitter::Cell { psc: None, .. }));
    assert_eq!(
        (b.observations[1].signal_dbm, b.observations[1].age_ms),
        (Some(-110), Some(2000))
    );
    assert_eq!(
        rejected(&b),
        vec![
            (0, Some("wifi:0123456789ab"), RadioRejection::BadMac),
            (0, Some("wifi:23456789abcd"), RadioRejection::BadMac),
        ]
    );
    // Read as v2, the flat item has no position block: every emitter is refused for it.
    let b = parse_geosubmit_v2(&bytes, example_received(), &RadioPolicy::default()).unwrap();
    assert_accounted(&b, 4);
    assert!(
        b.rejected
            .iter()
            .all(|r| r.reason == RadioRejection::NoPosition)
    );
}

/// Shaped as NeoStumbler sends it (mjaakko/NeoStumbler, `app/src/main/java/xyz/malkki/neostumbler/
/// ichnaea/dto/ReportDto.kt`, `CellTowerDto.kt`, `WifiAccessPointDto.kt`, `BluetoothBeaconDto.kt`;
/// its Geosubmit doc's extras: `mobileCountryCodeStr`, `arfcn`, `beaconType`, `id1..3`,
/// `estimatedDistance`, radioType `nr` and `802.11ax`). Its JSON encoder leaves nulls out
/// (`IchnaeaClient.kt`: `explicitNulls = false`). The second report is "reduced metadata": its
/// timestamp truncated to the day (`ReportSender.kt`, `reduceMetadata`).
#[test]
fn a_neostumbler_body() {
    let received = csv_received();
    let t = received.timestamp_millis() - 90_000;
    let day = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let body = json!({"items": [
        {
            "timestamp": t,
            "position": {
                "latitude": 60.1699, "longitude": 24.9384, "accuracy": 4.5, "age": 1200,
                "altitude": 21.3, "altitudeAccuracy": 3.0, "heading": 87.5, "pressure": 1009.8,
                "speed": 11.2, "source": "gps"
            },
            "wifiAccessPoints": [
                {"macAddress": "7c:10:c9:aa:bb:01", "radioType": "802.11ax", "age": 1500,
                 "channel": 37, "frequency": 6135, "signalStrength": -67, "ssid": "Koti",
                 "estimatedDistance": {"distance": 12.5, "accuracy": 1.0, "type": "TWO_SIDED"}},
                {"macAddress": "7c:10:c9:aa:bb:02", "radioType": "802.11n", "age": 1500,
                 "channel": 6, "frequency": 2437, "signalStrength": -80, "ssid": "Mokki_nomap"}
            ],
            "cellTowers": [
                {"radioType": "nr", "mobileCountryCode": 244, "mobileCountryCodeStr": "244",
                 "mobileNetworkCode": 91, "mobileNetworkCodeStr": "91",
                 "locationAreaCode": 1_000_123, "cellId": 12_345_678_901_i64, "age": 800,
                 "asu": 60, "primaryScramblingCode": 501, "serving": 1, "signalStrength": -80,
                 "arfcn": 632_448},
                {"radioType": "lte", "mobileCountryCode": 244, "mobileCountryCodeStr": "244",
                 "mobileNetworkCode": 5, "mobileNetworkCodeStr": "05", "locationAreaCode": 4100,
                 "cellId": 27_148_043, "age": 800, "primaryScramblingCode": 300, "serving": 0,
                 "signalStrength": -101, "timingAdvance": 5, "arfcn": 6300}
            ],
            "bluetoothBeacons": [
                {"macAddress": "D4:CA:6E:00:11:22", "beaconType": 533,
                 "id1": "f7826da6-4fa2-4e98-8024-bc5b71e0893e", "id2": "1", "id3": "2",
                 "age": 900, "signalStrength": -88}
            ]
        },
        {
            "timestamp": day.timestamp_millis(),
            "position": {"latitude": 60.17, "longitude": 24.94, "age": 0, "source": "fused"},
            "cellTowers": [
                {"radioType": "lte", "mobileCountryCode": 244, "mobileCountryCodeStr": "244",
                 "mobileNetworkCode": 5, "mobileNetworkCodeStr": "05", "locationAreaCode": 4100,
                 "cellId": 27_148_044, "signalStrength": -110}
            ]
        }
    ]});
    let b = parse_geosubmit_v2(
        &serde_json::to_vec(&body).unwrap(),
        received,
        &RadioPolicy::default(),
    )
    .unwrap();
    assert_accounted(&b, 6);
    assert_eq!(
        keys(&b),
        vec![
            "nr:244:91:1000123:12345678901",
            "lte:244:5:4100:27148043",
            "wifi:7c10c9aabb01",
            "ble:d4ca6e001122",
            "lte:244:5:4100:27148044",
        ]
    );
    assert_eq!(
        rejected(&b),
        vec![(0, Some("wifi:7c10c9aabb02"), RadioRejection::NomapSsid)]
    );
    let nr = &b.observations[0];
    assert_eq!(nr.at, ms(t - 1200));
    assert_eq!(
        (nr.signal_dbm, nr.asu, nr.age_ms),
        (Some(-80), Some(60), Some(-400))
    );
    assert!(matches!(nr.emitter, Emitter::Cell { psc: Some(501), .. }));
    assert_eq!(b.observations[1].timing_advance, Some(5));
    let wifi = &b.observations[2];
    assert_eq!(wifi.age_ms, Some(300));
    assert_eq!(
        wifi.emitter,
        Emitter::Wifi {
            mac: "7c10c9aabb01".into(),
            ssid: Some("Koti".into()),
            channel: Some(37),
            frequency_mhz: Some(6135),
        }
    );
    assert_eq!(b.observations[3].age_ms, Some(-300));
    assert_eq!(b.observations[4].at, day);
    assert!(b.corrections.is_empty(), "{:?}", b.corrections);
}

/// Shaped as Tower Collector sends it: the older `JsonMozillaUploadFormatter.java` writes JSON
/// `null` for unknown values and for a radio it cannot name (TD-SCDMA), and always writes the GPS
/// values, 0 when unknown (zamojski/TowerCollector, `app/src/main/java/info/zamojski/soft/
/// towercollector/files/formatters/json/JsonMozillaUploadFormatter.java`, `JsonFormatterBase.java`,
/// `providers/MozillaCellUtils.java`).
#[test]
fn a_tower_collector_body() {
    let received = csv_received();
    let t = received.timestamp_millis() - 60_000;
    let body = json!({"items": [{
        "timestamp": t,
        "position": {
            "latitude": 52.229675612345, "longitude": 21.012228712345, "accuracy": 6.0,
            "altitude": 110.0, "heading": 0.0, "speed": 0.0, "source": "gps"
        },
        "cellTowers": [
            {"radioType": "lte", "mobileCountryCode": 260, "mobileNetworkCode": 2,
             "locationAreaCode": 58_140, "cellId": 26_717_441, "primaryScramblingCode": null,
             "asu": 35, "signalStrength": -105, "timingAdvance": null, "serving": 1},
            {"radioType": "gsm", "mobileCountryCode": 260, "mobileNetworkCode": 2,
             "locationAreaCode": 10_250, "cellId": 1234, "primaryScramblingCode": null,
             "asu": 15, "signalStrength": null, "timingAdvance": 2, "serving": 0},
            {"radioType": null, "mobileCountryCode": 460, "mobileNetworkCode": 0,
             "locationAreaCode": 4321, "cellId": 5678, "primaryScramblingCode": 20,
             "asu": null, "signalStrength": -90, "timingAdvance": null, "serving": 0}
        ]
    }]});
    let b = parse_geosubmit_v2(
        &serde_json::to_vec(&body).unwrap(),
        received,
        &RadioPolicy::default(),
    )
    .unwrap();
    assert_accounted(&b, 3);
    assert_eq!(
        keys(&b),
        vec!["lte:260:2:58140:26717441", "gsm:260:2:10250:1234"]
    );
    let lte = &b.observations[0];
    assert_eq!(
        (lte.pos.lat, lte.pos.lon),
        (52.229675612345, 21.012228712345)
    );
    assert_eq!(
        (lte.signal_dbm, lte.asu, lte.timing_advance, lte.speed_mps),
        (Some(-105), Some(35), None, Some(0.0))
    );
    // Ichnaea's rule: a missing signal comes from the ASU (GSM: 2 * 15 - 113).
    let gsm = &b.observations[1];
    assert_eq!(
        (gsm.signal_dbm, gsm.asu, gsm.timing_advance),
        (Some(-83), Some(15), Some(2))
    );
    assert_eq!(rejected(&b), vec![(0, None, RadioRejection::UnknownRadio)]);
}

#[test]
fn a_body_of_nulls_and_unknown_fields() {
    let body = json!({"items": [{
        "timestamp": null, "carrier": null, "homeMobileCountryCode": null, "future": {"x": 1},
        "position": {"latitude": 48.8566, "longitude": 2.3522, "accuracy": null,
                     "altitude": null, "heading": null, "speed": null, "age": null,
                     "source": null},
        "cellTowers": [{"radioType": "gsm", "mobileCountryCode": 208, "mobileNetworkCode": 10,
                        "locationAreaCode": 7, "cellId": 99, "age": null, "asu": null,
                        "signalStrength": null, "timingAdvance": null,
                        "primaryScramblingCode": null, "serving": null}],
        "wifiAccessPoints": [{"macAddress": "00:11:22:33:44:55", "ssid": null, "channel": null,
                              "frequency": null, "signalStrength": null, "age": null,
                              "radioType": null, "signalToNoiseRatio": null}],
        "bluetoothBeacons": null
    }]});
    let received = csv_received();
    let b = parse_geosubmit_v2(
        &serde_json::to_vec(&body).unwrap(),
        received,
        &RadioPolicy::default(),
    )
    .unwrap();
    assert_eq!(keys(&b), vec!["gsm:208:10:7:99", "wifi:001122334455"]);
    assert!(b.rejected.is_empty() && b.corrections.is_empty());
    let o = &b.observations[1];
    assert_eq!(o.at, received);
    assert_eq!((o.accuracy_m, o.signal_dbm, o.age_ms), (None, None, None));
}

#[test]
fn fifty_thousand_items_parse() {
    let received = csv_received();
    // One item a second for 14 hours, all of it before the upload.
    let t = received.timestamp_millis() - 86_400_000;
    let mut body = String::from("{\"items\":[");
    for i in 0..50_000_u32 {
        if i > 0 {
            body.push(',');
        }
        body.push_str(&format!(
            "{{\"timestamp\":{},\"position\":{{\"latitude\":{},\"longitude\":{},\"accuracy\":8}},\
             \"cellTowers\":[{{\"radioType\":\"lte\",\"mobileCountryCode\":262,\
             \"mobileNetworkCode\":1,\"locationAreaCode\":{},\"cellId\":{},\
             \"signalStrength\":-97}}],\"wifiAccessPoints\":[{{\"macAddress\":\"00:1a:2b:{:02x}:{:02x}:{:02x}\",\
             \"signalStrength\":-70}}]}}",
            t + i64::from(i) * 1000,
            52.0 + f64::from(i) * 1e-5,
            13.0 + f64::from(i) * 1e-5,
            1 + i % 60_000,
            1 + i,
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            i & 0xff,
        ));
    }
    body.push_str("]}");
    let policy = RadioPolicy {
        max_items: 50_000,
        ..RadioPolicy::default()
    };
    let b = parse_geosubmit_v2(body.as_bytes(), received, &policy).unwrap();
    assert_eq!(b.items, 50_000);
    assert_eq!(b.observations.len(), 100_000);
    assert!(b.rejected.is_empty(), "{:?}", &b.rejected[..1]);
    let e = parse_geosubmit_v2(body.as_bytes(), received, &RadioPolicy::default()).unwrap_err();
    assert_eq!(
        e,
        RadioError::TooManyItems {
            count: 50_000,
            max: 10_000
        }
    );
}

/// WiGLE 1.4 as the app wrote it before 1.6 (wiglenet/wigle-wifi-wardriving,
/// `wiglewifiwardriving/src/main/java/net/wigle/wigleandroid/background/ObservationUploader.java`
/// at 1.4: the pre-header, then `MAC,SSID,AuthMode,FirstSeen,Channel,RSSI,CurrentLatitude,
/// CurrentLongitude,AltitudeMeters,AccuracyMeters,Type`, FirstSeen in the device's zone, the
/// frequency in Channel when there was no channel). Cells are keyed `MCCMNC_LAC_CID`
/// (`model/GsmOperator.java`); other 1.4 writers (Kismet) quote SSIDs with commas.
#[test]
fn a_wigle_1_4_file() {
    let text = "WigleWifi-1.4,appRelease=2.26,model=SM-G930F,release=8.0.0,device=herolte,\
                display=R16NW,board=universal8890,brand=samsung\n\
                MAC,SSID,AuthMode,FirstSeen,Channel,RSSI,CurrentLatitude,CurrentLongitude,\
                AltitudeMeters,AccuracyMeters,Type\n\
                c8:0e:14:aa:bb:01,\"Cafe, Bar\",[WPA2-PSK-CCMP][ESS],2026-11-01 13:30:00,6,-71,\
                52.5200066,13.4049540,34.5,6,WIFI\n\
                c8:0e:14:aa:bb:02,Keller,[ESS],2026-11-01 13:30:01,5180,-82,52.5200066,13.4049540,\
                34.5,6,WIFI\n\
                26201_4711_12345,Telekom.de,GSM;de,2026-11-01 13:30:02,62,-85,52.5200166,\
                13.4049640,34.5,0,GSM\n\
                262011_4712_67890123,Telekom.de,LTE;de,2026-11-01 13:30:03,1300,-99,52.5200166,\
                13.4049640,34.5,4,LTE\n\
                f4:5c:89:aa:bb:03,Headset,Misc [BT],2026-11-01 13:30:04,0,-75,52.52,13.405,34.5,\
                6,BT\n\
                c8:0e:14:aa:bb:04,Garten_nomap,[ESS],2026-11-01 13:30:05,11,-90,52.52,13.405,34.5,\
                6,WIFI\n";
    let b = parse_wigle_csv(text.as_bytes(), csv_received(), &RadioPolicy::default()).unwrap();
    assert_eq!(b.items, 6);
    assert_accounted(&b, 6);
    assert_eq!(
        keys(&b),
        vec![
            "wifi:c80e14aabb01",
            "wifi:c80e14aabb02",
            "gsm:262:1:4711:12345",
            "lte:262:11:4712:67890123",
            "ble:f45c89aabb03",
        ]
    );
    assert_eq!(
        rejected(&b),
        vec![(5, Some("wifi:c80e14aabb04"), RadioRejection::NomapSsid)]
    );
    let cafe = &b.observations[0];
    // 13:30 local is 90 minutes past the upload's 12:00 UTC: a 1.4 time has no zone.
    assert_eq!(
        cafe.at,
        Utc.with_ymd_and_hms(2026, 11, 1, 13, 30, 0).unwrap()
    );
    assert_eq!(
        (cafe.pos.lat, cafe.pos.lon, cafe.altitude_m, cafe.accuracy_m),
        (52.5200066, 13.404954, Some(34.5), Some(6.0))
    );
    assert_eq!(
        cafe.emitter,
        Emitter::Wifi {
            mac: "c80e14aabb01".into(),
            ssid: Some("Cafe, Bar".into()),
            channel: Some(6),
            frequency_mhz: Some(2437),
        }
    );
    assert!(matches!(
        b.observations[1].emitter,
        Emitter::Wifi {
            channel: Some(36),
            frequency_mhz: Some(5180),
            ..
        }
    ));
    let gsm = &b.observations[2];
    assert_eq!((gsm.signal_dbm, gsm.accuracy_m), (Some(-85), None));
}

/// WiGLE 1.6 as the app writes it now (`ObservationUploader.java`: the pre-header ends
/// `star=Sol,body=3,subBody=0`; `CSV_COLUMN_HEADERS`; FirstSeen in UTC; Apache Commons CSV quoting).
#[test]
fn a_wigle_1_6_file() {
    let text = "WigleWifi-1.6,appRelease=2.70,model=Pixel 7,release=14,device=panther,\
                display=UQ1A.240205.004,board=panther,brand=google,star=Sol,body=3,subBody=0\n\
                MAC,SSID,AuthMode,FirstSeen,Channel,Frequency,RSSI,CurrentLatitude,\
                CurrentLongitude,AltitudeMeters,AccuracyMeters,RCOIs,MfgrId,Type\n\
                3c:37:86:aa:bb:01,\"Joe \"\"The\"\" Cafe, 2F\",[WPA2-PSK-CCMP][RSN-PSK-CCMP][ESS],\
                2026-11-01 11:45:00,149,5745,-64,47.6062095,-122.3320708,56,3.79,5A03BA,,WIFI\n\
                6e:12:aa:bb:cc:02,,Misc [LE],2026-11-01 11:45:01,0,,-77,47.6062095,-122.3320708,\
                56,3.79,,76,BLE\n\
                310260_1000123_12345678901,T-Mobile,NR;us,2026-11-01 11:45:02,520110,0,-92,\
                47.6062195,-122.3320808,56,3.79,,,NR\n\
                3c:37:86:aa:bb:03,Late,[ESS],2026-11-01 13:45:00,1,2412,-70,47.6062095,\
                -122.3320708,56,3.79,,,WIFI\n";
    let b = parse_wigle_csv(text.as_bytes(), csv_received(), &RadioPolicy::default()).unwrap();
    assert_accounted(&b, 4);
    assert_eq!(
        keys(&b),
        vec![
            "wifi:3c3786aabb01",
            "ble:6e12aabbcc02",
            "nr:310:260:1000123:12345678901",
        ]
    );
    // 1.6 times are UTC: 13:45 is after the upload's 12:00.
    assert_eq!(
        rejected(&b),
        vec![(3, Some("wifi:3c3786aabb03"), RadioRejection::InFuture)]
    );
    let cafe = &b.observations[0];
    assert_eq!(
        cafe.emitter,
        Emitter::Wifi {
            mac: "3c3786aabb01".into(),
            ssid: Some("Joe \"The\" Cafe, 2F".into()),
            channel: Some(149),
            frequency_mhz: Some(5745),
        }
    );
    assert_eq!(
        (cafe.at, cafe.signal_dbm, cafe.accuracy_m),
        (
            Utc.with_ymd_and_hms(2026, 11, 1, 11, 45, 0).unwrap(),
            Some(-64),
            Some(3.79)
        )
    );
    assert_eq!(b.observations[2].signal_dbm, Some(-92));
}

/// The same three measurements in both real OpenCelliD header orders: OpenCelliD's upload format
/// (wiki.opencellid.org/wiki/API) and Tower Collector's (zamojski/TowerCollector,
/// `app/src/main/java/info/zamojski/soft/towercollector/files/formatters/csv/
/// CsvUploadFormatter.java`: quoted `"yyyy-MM-dd HH:mm:ss.SSS'Z'"` times, `signal` as ASU when
/// known, LAC in `lac` but TAC in `tac`, PSC in `psc` but PCI in `pci`, a quoted device name).
#[test]
fn opencellid_files_in_both_header_orders() {
    let wiki = "mcc,mnc,lac,cellid,lon,lat,signal,measured_at,rating,speed,direction,act,ta,psc,\
                tac,pci,sid,nid,bid\n\
                260,2,,26717441,21.0122287,52.2296756,35,2026-11-01 11:00:00,6,12,270,LTE,4,,\
                58140,220,,,\n\
                260,3,10250,40001234,21.0122287,52.2296756,-95,2026-11-01 11:00:00,6,12,270,\
                UMTS,,301,,,,,\n\
                ,,,,21.0122287,52.2296756,-80,2026-11-01 11:00:00,6,12,270,CDMA,,,,,4,2,3\n";
    let tower_collector = "lat,lon,mcc,mnc,sid,lac,tac,nid,cellid,bid,psc,pci,signal,ta,\
                           measured_at,rating,speed,direction,act,devn\n\
                           52.22967560,21.01222870,260,2,,,58140,,26717441,,,220,35,4,\
                           \"2026-11-01 11:00:00.000Z\",6,12,270,LTE,\"Google Pixel 7\"\n\
                           52.22967560,21.01222870,260,3,,10250,,,40001234,,301,,-95,,\
                           \"2026-11-01 11:00:00.000Z\",6,12,270,UMTS,\"Google Pixel 7\"\n\
                           52.22967560,21.01222870,,,4,,,2,,3,,,-80,,\
                           \"2026-11-01 11:00:00.000Z\",6,12,270,CDMA,\"Google Pixel 7\"\n";
    let policy = RadioPolicy::default();
    let a = parse_opencellid_csv(wiki.as_bytes(), csv_received(), &policy).unwrap();
    let b = parse_opencellid_csv(tower_collector.as_bytes(), csv_received(), &policy).unwrap();
    assert_eq!(a, b);
    assert_accounted(&a, 3);
    assert_eq!(
        keys(&a),
        vec!["lte:260:2:58140:26717441", "wcdma:260:3:10250:40001234"]
    );
    assert_eq!(rejected(&a), vec![(2, None, RadioRejection::UnknownRadio)]);
    let lte = &a.observations[0];
    assert_eq!(lte.at, Utc.with_ymd_and_hms(2026, 11, 1, 11, 0, 0).unwrap());
    assert_eq!((lte.pos.lat, lte.pos.lon), (52.2296756, 21.0122287));
    // ASU 35 on LTE's scale is -105 dBm.
    assert_eq!(
        (lte.signal_dbm, lte.asu, lte.timing_advance),
        (Some(-105), Some(35), Some(4))
    );
    assert_eq!(
        (lte.accuracy_m, lte.speed_mps, lte.heading_deg),
        (Some(6.0), Some(12.0), Some(270.0))
    );
    assert!(matches!(lte.emitter, Emitter::Cell { psc: Some(220), .. }));
    let umts = &a.observations[1];
    assert!(matches!(umts.emitter, Emitter::Cell { psc: Some(301), .. }));
    assert_eq!((umts.signal_dbm, umts.asu), (Some(-95), None));
}

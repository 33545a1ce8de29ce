#!/usr/bin/env python3
"""Writes the binary hand-made seeds (tiny JPEGs, zips, gzips) and the NMEA seed, whose
checksums are easier computed than typed. Run from fuzz/seeds/; the output is committed, so this
only needs running again to change a seed."""

import gzip
import io
import struct
import zipfile
from functools import reduce


def sof0(width, height):
    return (b"\xff\xc0" + struct.pack(">HBHH", 17, 8, height, width)
            + bytes([3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]))


def jpeg(width, height, app1=b""):
    return b"\xff\xd8" + app1 + sof0(width, height) + b"\xff\xda\x00\x02" + b"\x00" * 4 + b"\xff\xd9"


def rationals(*pairs):
    return b"".join(struct.pack("<II", n, d) for n, d in pairs)


def exif_gps():
    """Little-endian TIFF: IFD0 with DateTimeOriginal's neighbour DateTime and a GPS IFD with
    lat/lon/alt/time/date/speed/direction."""
    entries0 = 2
    ifd0_at = 8
    ifd0_len = 2 + 12 * entries0 + 4
    datetime_at = ifd0_at + ifd0_len
    datetime = b"2026:11:25 09:15:02\x00"
    gps_at = datetime_at + len(datetime)
    gps_tags = []  # (tag, type, count, payload)
    gps_tags.append((0x0000, 1, 4, bytes([2, 3, 0, 0])))
    gps_tags.append((0x0001, 2, 2, b"N\x00"))
    gps_tags.append((0x0002, 5, 3, rationals((43, 1), (44, 1), (182400, 10000))))
    gps_tags.append((0x0003, 2, 2, b"E\x00"))
    gps_tags.append((0x0004, 5, 3, rationals((7, 1), (25, 1), (285600, 10000))))
    gps_tags.append((0x0005, 1, 1, b"\x00"))
    gps_tags.append((0x0006, 5, 1, rationals((55, 1))))
    gps_tags.append((0x0007, 5, 3, rationals((8, 1), (15, 1), (2, 1))))
    gps_tags.append((0x000C, 2, 2, b"K\x00"))
    gps_tags.append((0x000D, 5, 1, rationals((45, 1))))
    gps_tags.append((0x0011, 5, 1, rationals((9000, 100))))
    gps_tags.append((0x001D, 2, 11, b"2026:11:25\x00"))
    gps_len = 2 + 12 * len(gps_tags) + 4
    data_at = gps_at + gps_len
    gps_ifd = struct.pack("<H", len(gps_tags))
    extra = b""
    for tag, typ, count, payload in gps_tags:
        if len(payload) <= 4:
            gps_ifd += struct.pack("<HHI", tag, typ, count) + payload.ljust(4, b"\x00")
        else:
            gps_ifd += struct.pack("<HHII", tag, typ, count, data_at + len(extra))
            extra += payload
    gps_ifd += struct.pack("<I", 0)
    ifd0 = struct.pack("<H", entries0)
    ifd0 += struct.pack("<HHII", 0x0132, 2, len(datetime), datetime_at)
    ifd0 += struct.pack("<HHII", 0x8825, 4, 1, gps_at)
    ifd0 += struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", ifd0_at) + ifd0 + datetime + gps_ifd + extra
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def nmea(sentence):
    checksum = reduce(lambda a, b: a ^ b, sentence.encode(), 0)
    return f"${sentence}*{checksum:02X}"


def zipped(entries, method=zipfile.ZIP_DEFLATED):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as z:
        for name, data in entries:
            z.writestr(name, data)
    return out.getvalue()


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


plain = jpeg(64, 48)
tagged = jpeg(1920, 1080, exif_gps())
write("exif/tiny-sof0.jpg", plain)
write("exif/tiny-exif-gps.jpg", tagged)

log = "\r\n".join([
    "[1795600000000]" + nmea("GPRMC,081502.00,A,4344.3040,N,00725.4760,E,12.3,90.0,251126,,,A"),
    "[1795600001000]" + nmea("GPGGA,081503.00,4344.3046,N,00725.4770,E,1,08,0.9,55.0,M,47.0,M,,"),
    nmea("GNRMC,081504,A,4344.3052,N,00725.4780,E,12.3,90.0,251126,,,A"),
    nmea("GNGGA,081504,4344.3052,N,00725.4780,E,1,12,0.8,56.0,M,47.0,M,,"),
    nmea("GPGGA,,,,,,0,00,99.99,,,,,,"),
    nmea("GPRMC,081505,V,,,,,,,251126,,,N"),
    nmea("GPGSV,1,1,01,05,45,120,40"),
]) + "\r\n"
write("nmea/blackvue-style.nmea", log.encode())

gpx = open("gpx/minimal-1.1.gpx", "rb").read()
write("drive/frames-and-gpx.zip", zipped([
    ("drive/0001.jpg", plain), ("drive/0002.JPG", tagged), ("drive/track.gpx", gpx),
    ("drive/manifest.json", b"{}"), ("drive/thumbs/", b""),
]))
write("drive/exif-only-stored.zip", zipped([("a.jpeg", tagged), ("b.jpeg", tagged)],
                                           zipfile.ZIP_STORED))
write("drive/frames-and-nmea.zip", zipped([("0001.jpg", plain), ("track.nmea", log.encode())]))
write("drive/gzipped-drive.zip.gz", gzip.compress(
    zipped([("0001.jpg", tagged), ("t.log", log.encode())]), mtime=0))
write("drive/gzip-two-members.gz", gzip.compress(b"hello ", mtime=0) + gzip.compress(b"world", mtime=0))

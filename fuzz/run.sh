#!/usr/bin/env bash
# Fuzzes the ingest parsers with cargo-fuzz, one target after another, and prints what each did.
#
#   fuzz/run.sh [SECONDS] [TARGET...]   fuzz each TARGET (default: all) for SECONDS (default 60)
#   fuzz/run.sh --regressions           run every saved input in fuzz/regressions/ once
#   fuzz/run.sh --list                  the targets
#
# Works on stable Rust: RUSTC_BOOTSTRAP=1 lets stable rustc take the -Z flags cargo-fuzz passes
# (-Zsanitizer=address). Needs `cargo install cargo-fuzz --locked` and a C++ compiler (libFuzzer).
#
# Environment:
#   SANITIZER=address|none   (address)   `none` builds faster and runs ~2x faster, finds fewer bugs
#   JOBS=N                   (1)         cargo build jobs
#   MAX_LEN=BYTES            (65536)     libFuzzer's largest input
#   SEED_LEN=BYTES           (16384)     real files are cut to this size as seeds (big seeds make
#                                        every mutation slow; the parsers read headers first)
#   COVERMAP_DATA=DIR        (testdata/ of the repository) real files to seed from
#   FUZZ_ARGS="..."          ()          more libFuzzer flags, e.g. "-dict=x -only_ascii=1"
#
# Corpora grow in fuzz/corpus/<target>/ (kept between runs, git-ignored); a crash, hang or OOM is
# written to fuzz/artifacts/<target>/ and reported at the end; the script then exits 1.

set -uo pipefail

FUZZ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$FUZZ_DIR/.." && pwd)
DATA=${COVERMAP_DATA:-$ROOT/testdata}
SANITIZER=${SANITIZER:-address}
MAX_LEN=${MAX_LEN:-65536}
SEED_LEN=${SEED_LEN:-16384}
ALL_TARGETS=(gpx nmea exif drive geosubmit wigle opencellid signed_headers signed_request)

export RUSTC_BOOTSTRAP=1
export CARGO_BUILD_JOBS=${JOBS:-1}

cd "$FUZZ_DIR" || exit 2

die() {
    echo "run.sh: $*" >&2
    exit 2
}

command -v cargo-fuzz >/dev/null || die "cargo-fuzz is missing: cargo install cargo-fuzz --locked"

# Copies real files into the corpus as seeds, cut to SEED_LEN. Missing data is no error.
seed_from() {
    local target=$1
    shift
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        head -c "$SEED_LEN" "$f" >"corpus/$target/seed-$(basename "$f")"
    done
}

seed() {
    local t=$1
    mkdir -p "corpus/$t"
    if [[ -d seeds/$t ]]; then
        cp seeds/"$t"/* "corpus/$t/" 2>/dev/null
    fi
    local cam=$DATA/camera
    case $t in
    gpx)
        seed_from gpx "$cam"/gpx/*.gpx "$cam"/gpx/*.xml "$cam"/mapillary_tools/*.gpx \
            "$DATA"/roads/graphhopper/*.gpx
        ;;
    nmea)
        seed_from nmea "$cam"/nmea/*.log "$cam"/blackvue/*.gps
        ;;
    exif)
        seed_from exif "$cam"/mapillary_tools/*.jpg "$cam"/mapillary_tools/*.JPG \
            "$cam"/exif_rs/exif.* "$DATA"/images/*/*.jpg
        ;;
    drive)
        # A drive of real frame headers and a real track, where Python is there to zip it.
        if command -v python3 >/dev/null && [[ -d $cam/mapillary_tools ]]; then
            local tmp
            tmp=$(mktemp -d)
            head -c 16384 "$cam/mapillary_tools/DSC00001.JPG" >"$tmp/DSC00001.JPG"
            head -c 16384 "$cam/mapillary_tools/test_exif.jpg" >"$tmp/test_exif.jpg"
            cp "$cam/mapillary_tools/sf_30km_h.gpx" "$tmp/track.gpx"
            (cd "$tmp" && python3 -m zipfile -c drive.zip DSC00001.JPG test_exif.jpg track.gpx) &&
                cp "$tmp/drive.zip" corpus/drive/seed-real-drive.zip
            rm -rf "$tmp"
        fi
        ;;
    geosubmit)
        seed_from geosubmit "$DATA"/radio/geosubmit/*.json
        ;;
    esac
}

stat_of() { # stat_of NAME LOG: a libFuzzer -print_final_stats value
    sed -n "s/^stat::$1: *//p" "$2" | tail -1
}

build() {
    echo "== building all targets (sanitizer: $SANITIZER, jobs: $CARGO_BUILD_JOBS)"
    cargo fuzz build -s "$SANITIZER" || die "the build failed"
}

case ${1:-} in
--list)
    printf '%s\n' "${ALL_TARGETS[@]}"
    exit 0
    ;;
--regressions)
    build
    status=0
    for t in "${ALL_TARGETS[@]}"; do
        [[ -d regressions/$t ]] || continue
        for f in regressions/"$t"/*; do
            [[ -f $f ]] || continue
            if cargo fuzz run -s "$SANITIZER" "$t" "$f" -- -runs=1 >"/tmp/covermap-fuzz-$t.log" 2>&1; then
                echo "ok    $t $f"
            else
                echo "FAIL  $t $f ($(grep -m1 -E 'panicked at|ERROR:' "/tmp/covermap-fuzz-$t.log"))"
                status=1
            fi
        done
    done
    exit $status
    ;;
esac

SECONDS_EACH=${1:-60}
[[ $SECONDS_EACH =~ ^[0-9]+$ ]] || die "SECONDS must be a number, not '$SECONDS_EACH'"
shift || true
TARGETS=("$@")
[[ ${#TARGETS[@]} -gt 0 ]] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "no target '$t' (try --list)"
done

build
mkdir -p logs
declare -a rows
found=0
for t in "${TARGETS[@]}"; do
    seed "$t"
    log=logs/$t.log
    before=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
    echo "== $t: ${SECONDS_EACH}s, corpus $(find "corpus/$t" -type f | wc -l) inputs, log fuzz/$log"
    # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
    cargo fuzz run -s "$SANITIZER" "$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -max_len="$MAX_LEN" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 ${FUZZ_ARGS:-} >"$log" 2>&1
    rc=$?
    execs=$(stat_of number_of_executed_units "$log")
    rate=$(stat_of average_exec_per_sec "$log")
    corpus=$(find "corpus/$t" -type f | wc -l)
    after=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
    result="no finding"
    if [[ $rc -ne 0 || $after -gt $before ]]; then
        found=1
        artifact=$(ls -t "artifacts/$t"/* 2>/dev/null | head -1)
        why=$(grep -m1 -E 'panicked at|ERROR: (libFuzzer|AddressSanitizer)' "$log")
        result="FOUND (rc $rc): ${why:-see $log} -> fuzz/${artifact:-?}"
        # The panic message is on the line after "panicked at".
        grep -A1 -m1 'panicked at' "$log" | tail -1 | sed 's/^/        /'
    fi
    echo "   $t: ${execs:-?} execs, ${rate:-?} exec/s, corpus $corpus, $result"
    rows+=("$(printf '%-15s %12s %9s %8s  %s' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$result")")
done

echo
printf '%-15s %12s %9s %8s  %s\n' target execs exec/s corpus result
printf '%s\n' "${rows[@]}"
if [[ $found -ne 0 ]]; then
    echo
    echo "Reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run -s $SANITIZER TARGET fuzz/artifacts/TARGET/FILE"
    echo "Minimise:  RUSTC_BOOTSTRAP=1 cargo fuzz tmin -s $SANITIZER TARGET fuzz/artifacts/TARGET/FILE"
fi
exit $found

#!/usr/bin/env bash
# Download the official checkpoints (REFERENCE 9.2) into out/<dataset>/.
#
#   ./download_checkpoint.sh kitti-360       # MVBTS + KDBTS (KDBTS release, zip)  -> out/kitti_360/
#   ./download_checkpoint.sh kitti-raw       # MVBTS + KDBTS (KDBTS release, zip)  -> out/kitti_raw/
#   ./download_checkpoint.sh bts-kitti-360   # BTS                                 -> out/kitti_360/pretrained/training-checkpoint.pt
#   ./download_checkpoint.sh bts-kitti-raw   # BTS                                 -> out/kitti_raw/pretrained/training-checkpoint.pt
#
# The file is downloaded into a temporary directory first and only moved into place once it is complete (and,
# for the zips, unpacked without error), so an interrupted or failed download never leaves a half-written
# checkpoint behind. Uses curl, or wget when curl is missing. Environment:
#   BTS_CHECKPOINT_BASE_URL  server root (default https://cvg.cit.tum.de/webshare/g/behindthescenes)
#   BTS_CHECKPOINT_OUT       output root (default out)
set -euo pipefail

BASE_URL="${BTS_CHECKPOINT_BASE_URL:-https://cvg.cit.tum.de/webshare/g/behindthescenes}"
OUT_ROOT="${BTS_CHECKPOINT_OUT:-out}"

usage() {
    sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
}

[[ $# -eq 1 ]] || usage
case "$1" in
    kitti-360) url="$BASE_URL/kdbts/kitti_360.zip" dest="$OUT_ROOT/kitti_360" kind=zip ;;
    kitti-raw) url="$BASE_URL/kdbts/kitti_raw.zip" dest="$OUT_ROOT/kitti_raw" kind=zip ;;
    bts-kitti-360) url="$BASE_URL/kitti-360/training-checkpoint.pt" dest="$OUT_ROOT/kitti_360/pretrained" kind=pt ;;
    bts-kitti-raw) url="$BASE_URL/kitti/training-checkpoint.pt" dest="$OUT_ROOT/kitti_raw/pretrained" kind=pt ;;
    -h | --help) usage ;;
    *)
        echo "error: unknown checkpoint '$1'" >&2
        usage
        ;;
esac

fail() {
    echo "error: $*" >&2
    exit 1
}

tmp="$(mktemp -d "${TMPDIR:-/tmp}/bts-checkpoint.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT INT TERM

download() {  # url file
    if command -v curl >/dev/null 2>&1; then
        curl --fail --location --retry 2 --connect-timeout 30 --progress-bar --output "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget --tries=3 --timeout=30 --output-document="$2" "$1"
    else
        fail "neither curl nor wget is installed; install one of them, or download $1 by hand into $dest/"
    fi
}

echo "downloading $url"
file="$tmp/download.$kind"
if ! download "$url" "$file"; then
    fail "could not download $url (offline, or the server refused or failed).
       Check the network / proxy and try again, or download the file by hand into $dest/.
       Nothing was written to $dest."
fi
[[ -s "$file" ]] || fail "the server sent an empty file for $url; nothing was written to $dest"

if [[ "$kind" == zip ]]; then
    # Unzip only after the download has finished (the official script unzipped before downloading).
    mkdir "$tmp/unpacked"
    if command -v unzip >/dev/null 2>&1; then
        unzip -q "$file" -d "$tmp/unpacked" || fail "$url is not a valid zip archive; nothing was written to $dest"
    else
        python3 -m zipfile -e "$file" "$tmp/unpacked" || fail "$url is not a valid zip archive; nothing was written to $dest"
    fi
    mapfile -t checkpoints < <(cd "$tmp/unpacked" && find . -name '*.pt' | sort)
    [[ ${#checkpoints[@]} -gt 0 ]] || fail "the archive $url holds no .pt checkpoint; nothing was written to $dest"
    mkdir -p "$dest"
    # Move file by file: a file only appears under its final name once it is complete.
    (cd "$tmp/unpacked" && find . -type f) | while read -r rel; do
        mkdir -p "$dest/$(dirname "$rel")"
        mv -f "$tmp/unpacked/$rel" "$dest/$rel.partial"
        mv -f "$dest/$rel.partial" "$dest/$rel"
    done
    echo "checkpoints in $dest:"
    for rel in "${checkpoints[@]}"; do echo "  $dest/${rel#./}"; done
else
    mkdir -p "$dest"
    mv -f "$file" "$dest/training-checkpoint.pt.partial"
    mv -f "$dest/training-checkpoint.pt.partial" "$dest/training-checkpoint.pt"
    echo "checkpoint: $dest/training-checkpoint.pt"
fi
echo "see README.md (Checkpoints) for the config that goes with each file"

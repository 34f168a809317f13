#!/usr/bin/env bash
# Stand-in base images from Debian's packages, for machines that cannot reach an image registry
# (no python:3.11-slim-bookworm, no postgres:15). Needs root, debootstrap, and Debian's mirror.
#
#   bash docker/make_debian_base.sh [--engine podman|docker] [--base-tag T] [--postgres-tag T]
#                                   [--mirror URL] [--no-postgres] [--build-opt OPT]...
#
# 1. localhost/senbert-base:bookworm: `debootstrap --variant=minbase bookworm` with python3
#    (3.11), python3-venv, python3-pip and ca-certificates, imported as an image (about a minute,
#    ~300 MB). docker/Dockerfile takes it as --build-arg BASE=...
# 2. localhost/senbert-postgres:15: that base plus Debian's postgresql-15, with an entrypoint that
#    behaves like the official image's for docker/compose.yaml (docker/postgres/Dockerfile).
#    compose uses it when SENBERT_POSTGRES_IMAGE names it.
# docker/build.sh --debian-base runs this when the base is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${SENBERT_ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
BASE_TAG=localhost/senbert-base:bookworm
PG_TAG=localhost/senbert-postgres:15
MIRROR=http://deb.debian.org/debian
POSTGRES=1
BUILD_OPTS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) ENGINE=$2; shift 2 ;;
    --base-tag) BASE_TAG=$2; shift 2 ;;
    --postgres-tag) PG_TAG=$2; shift 2 ;;
    --mirror) MIRROR=$2; shift 2 ;;
    --no-postgres) POSTGRES=0; shift ;;
    --build-opt) BUILD_OPTS+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "make_debian_base.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
command -v debootstrap >/dev/null 2>&1 || {
  echo "make_debian_base.sh: needs debootstrap (apt-get install debootstrap)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "make_debian_base.sh: debootstrap needs root" >&2; exit 1; }

t0=$(date +%s)
root=$(mktemp -d "${TMPDIR:-/tmp}/senbert-rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm (minbase + python3, python3-venv, python3-pip) into $root"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$root" "$MIRROR" > "$root.log" 2>&1 || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
cat > "$root/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
# what the official slim images leave out: package lists, the .deb cache
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar -C "$root" -c . | "$ENGINE" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$BASE_TAG" >/dev/null
"$ENGINE" run --rm "$BASE_TAG" sh -c 'printf "%s: Debian %s, %s\n" "$0" "$(cat /etc/debian_version)" "$(python3 --version)"' "$BASE_TAG"
if [ "$POSTGRES" = 1 ]; then
  ignore=()
  [ "$(basename "$ENGINE")" = podman ] && ignore=(--ignorefile docker/postgres/Dockerfile.dockerignore)
  "$ENGINE" build "${BUILD_OPTS[@]}" "${ignore[@]}" -f docker/postgres/Dockerfile \
    --build-arg BASE="$BASE_TAG" -t "$PG_TAG" .
fi
echo "make_debian_base.sh: done in $(( $(date +%s) - t0 )) s"

#!/usr/bin/env bash
# Build SenBERT's image (the Prefect server, the deploy step and the workers all run from it).
#
#   bash docker/build.sh                                   # official base (needs Docker Hub)
#   bash docker/build.sh --debian-base --pip-from-host     # no registry: Debian stand-ins (podman)
#
# Options:
#   --engine podman|docker   the container engine (default: podman when installed, else docker)
#   --tag T                  the image's tag (default senbert-worker:cpu)
#   --debian-base            build on localhost/senbert-base:bookworm and make it first when it is
#                            missing, with the PostgreSQL stand-in (docker/make_debian_base.sh);
#                            then run compose with SENBERT_POSTGRES_IMAGE=localhost/senbert-postgres:15
#   --base-tag T, --postgres-tag T   the stand-ins' tags (defaults above)
#   --pip-from-host          give the build this machine's pip configuration (`pip config list`):
#                            its find-links folders, extra file:// indexes and CA bundle are
#                            mounted read-only under /host-pip (podman build --volume) and passed
#                            as PIP_* build arguments, and torch comes from pip's own sources
#                            (TORCH_INDEX empty) instead of PyTorch's index. Nothing of it is
#                            kept in the image.
#   --torch-index URL        torch's index (default: PyTorch's CPU index; a CUDA one for the GPU
#                            variant, e.g. https://download.pytorch.org/whl/cu128)
#   --no-layer-cache         podman: keep no intermediate images (one image, nothing to prune)
#   --build-opt OPT          one more option for `<engine> build` (repeatable), e.g. --network=host
# The build context is the repository this script is in (only what docker/Dockerfile.dockerignore
# lets through). Runs from the repository root or anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${SENBERT_ENGINE:-$(command -v podman >/dev/null 2>&1 && echo podman || echo docker)}
TAG=senbert-worker:cpu
DEBIAN=0
BASE_TAG=localhost/senbert-base:bookworm
PG_TAG=localhost/senbert-postgres:15
HOST_PIP=0
TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_SET=0
OPTS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) ENGINE=$2; shift 2 ;;
    --tag) TAG=$2; shift 2 ;;
    --debian-base) DEBIAN=1; shift ;;
    --base-tag) BASE_TAG=$2; shift 2 ;;
    --postgres-tag) PG_TAG=$2; shift 2 ;;
    --pip-from-host) HOST_PIP=1; shift ;;
    --torch-index) TORCH_INDEX=$2; TORCH_SET=1; shift 2 ;;
    --no-layer-cache) OPTS+=(--layers=false); shift ;;
    --build-opt) OPTS+=("$2"); shift 2 ;;
    -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
is_podman=0
[ "$(basename "$ENGINE")" = podman ] && is_podman=1
t0=$(date +%s)

ARGS=(-f docker/Dockerfile -t "$TAG")
if [ "$DEBIAN" = 1 ]; then
  if ! "$ENGINE" image exists "$BASE_TAG" 2>/dev/null && ! "$ENGINE" image inspect "$BASE_TAG" >/dev/null 2>&1; then
    bash docker/make_debian_base.sh --engine "$ENGINE" --base-tag "$BASE_TAG" --postgres-tag "$PG_TAG" \
      $(for o in "${OPTS[@]}"; do printf -- '--build-opt %s ' "$o"; done)
  fi
  ARGS+=(--build-arg "BASE=$BASE_TAG")
fi

if [ "$HOST_PIP" = 1 ]; then
  [ "$is_podman" = 1 ] || { echo "build.sh: --pip-from-host needs podman (docker build has no --volume)" >&2; exit 2; }
  PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
  # KEY=VALUE lines (PIP_FIND_LINKS=..., MOUNT=/path) from `pip config list`
  while IFS= read -r line; do
    case "$line" in
      MOUNT=*) ARGS+=(--volume "${line#MOUNT=}:ro") ;;
      PIP_*) ARGS+=(--build-arg "$line") ;;
    esac
  done < <("$PYTHON" - <<'PY'
import os, shlex, subprocess, sys
out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
vals = {}
for line in out.splitlines():
    key, _, value = line.partition("=")
    name = key.rsplit(".", 1)[-1]
    if name in ("find-links", "extra-index-url", "index-url", "cert"):
        words = shlex.split(value)
        vals[name] = " ".join(words[0].split()) if words else ""  # the last scope printed wins
mounts = set()
PREFIX = "/host-pip"  # where the host's paths appear in the build (not over the image's own files)
for name, value in vals.items():
    items = []
    for item in value.split():
        url = item.startswith("file://")
        path = item[len("file://"):] if url else item
        if path.startswith("/"):
            path = path.rstrip("/")
            # a local "simple" index links to files beside it: mount its parent folder
            mounts.add(os.path.dirname(path) if os.path.basename(path) == "simple" else path)
            item = ("file://" if url else "") + PREFIX + path
        items.append(item)  # a remote index stays as it is
    print(f"PIP_{name.upper().replace('-', '_')}={' '.join(items)}")
for m in sorted(mounts):
    if os.path.exists(m):
        print(f"MOUNT={m}:{PREFIX}{m}")
PY
)
  [ "$TORCH_SET" = 1 ] || TORCH_INDEX=""
fi
ARGS+=(--build-arg "TORCH_INDEX=$TORCH_INDEX")
[ "$is_podman" = 1 ] && ARGS+=(--ignorefile docker/Dockerfile.dockerignore)

echo "+ $ENGINE build ${OPTS[*]} ${ARGS[*]} ."
"$ENGINE" build "${OPTS[@]}" "${ARGS[@]}" .
echo "build.sh: $TAG built in $(( $(date +%s) - t0 )) s"
[ "$DEBIAN" = 1 ] && echo "build.sh: run compose with SENBERT_IMAGE=$TAG SENBERT_POSTGRES_IMAGE=$PG_TAG"
exit 0

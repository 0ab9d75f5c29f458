#!/usr/bin/env bash
# Build the pipeline's container images, named and tagged as conf/containers.config says (containers/images.py).
#
#   containers/build.sh [--gpu] [FAMILY...]     public build: BASE = python slim image, packages from PyPI
#   containers/build.sh --offline [FAMILY...]   no registry pulls: a Debian base made with debootstrap and
#                                               `docker import`, wheels built on the host and installed with
#                                               --no-index (what `make test-containers` and CI use)
#   --setup-docker   install docker.io + debootstrap (apt) and start dockerd when no daemon answers (root only)
#
# Cache (reused by later runs on the same machine): $CSREFINER_CONTAINER_CACHE, default ~/.cache/csrefiner-containers
#   base-<suite>.tar   the debootstrapped root file system       wheels/<family>-<hash>/   the wheelhouses
# and Docker's own layer cache: the dependency layer is rebuilt only when pyproject.toml/constraints.txt change.
set -euo pipefail
cd "$(dirname "$0")/.."

OFFLINE=0 GPU=0 SETUP=0 FAMILIES=()
for arg in "$@"; do
    case "$arg" in
        --offline) OFFLINE=1 ;;
        --gpu) GPU=1 ;;
        --setup-docker) SETUP=1 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) echo "unknown option $arg" >&2; exit 2 ;;
        *) FAMILIES+=("$arg") ;;
    esac
done

PYTHON=${PYTHON:-python3}
CACHE=${CSREFINER_CONTAINER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/csrefiner-containers}
SUITE=bookworm                         # Debian 12: python3 is 3.11, like the public python:3.11 images
LOCAL_BASE=csrefiner-local/debian-python:$SUITE
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$CACHE"
log() { printf '[build.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

setup_docker() {
    if docker info >/dev/null 2>&1; then return; fi
    if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
        log "installing docker.io and debootstrap"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
    fi
    log "starting dockerd (log: $CACHE/dockerd.log)"
    nohup dockerd >"$CACHE/dockerd.log" 2>&1 &
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
    echo "dockerd did not come up; see $CACHE/dockerd.log" >&2; exit 1
}

local_base() {  # a minimal Debian with python3 + venv + ps, imported into docker, cached as a tarball
    if docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then return; fi
    local tar="$CACHE/base-$SUITE.tar"
    if [ ! -s "$tar" ]; then
        log "debootstrap $SUITE (minbase + python3) -> $tar"
        local root="$CACHE/rootfs-$SUITE"
        rm -rf "$root"
        debootstrap --variant=minbase --include=python3,python3-venv,procps,ca-certificates \
            "$SUITE" "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc \
            "$root"/usr/share/man "$root"/usr/share/locale
        tar -C "$root" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar" && rm -rf "$root"
    fi
    log "docker import $tar as $LOCAL_BASE"
    docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' "$tar" "$LOCAL_BASE" >/dev/null
}

extra_of() { case "$1" in base) echo cgef ;; *) echo "$1" ;; esac; }

wheelhouse() {  # wheels for one family's dependencies (built here, so sdists need no compiler in the image)
    local family=$1 extra key dir
    extra=$(extra_of "$family")
    local pins=constraints.txt  # a family that cannot share the main pins has its own (cpsam: cellpose 4)
    [ -f "constraints-$family.txt" ] && pins="constraints-$family.txt"
    key=$(cat pyproject.toml "$pins" | sha256sum | cut -c1-12)
    dir="$CACHE/wheels/$family-$key"
    if [ ! -f "$dir/.complete" ]; then
        log "wheelhouse for $family ([$extra]) -> $dir"
        rm -rf "$dir" && mkdir -p "$dir"
        "$PYTHON" -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['$extra']))" >"$dir/requirements.txt"
        "$PYTHON" -m pip wheel --quiet --disable-pip-version-check -w "$dir" -c "$pins" \
            -r "$dir/requirements.txt" "setuptools>=68" wheel
        touch "$dir/.complete"
    fi
    echo "$dir"
}

build() {
    local family=$1 ref=$2
    local args=(-f "containers/$family/Dockerfile" -t "$ref" --build-arg "GPU=$GPU")
    rm -rf .whl && mkdir .whl
    if [ "$OFFLINE" = 1 ]; then
        local wh
        wh=$(wheelhouse "$family")
        cp -l "$wh"/*.whl .whl/ 2>/dev/null || cp "$wh"/*.whl .whl/
        args+=(--network none --build-arg "BASE=$LOCAL_BASE" --build-arg "PIP_ARGS=--no-index --find-links /wheels")
    fi
    log "docker build $ref ($family)"
    docker build --quiet "${args[@]}" . >/dev/null
    rm -rf .whl
}

[ "$SETUP" = 1 ] && setup_docker
docker info >/dev/null 2>&1 || { echo "no Docker daemon answers; run with --setup-docker (as root) or start one" >&2; exit 1; }
[ "$OFFLINE" = 1 ] && local_base

mapfile -t LINES < <("$PYTHON" containers/images.py)
for line in "${LINES[@]}"; do
    family=${line%% *} ref=${line#* }
    if [ ${#FAMILIES[@]} -eq 0 ] || [[ " ${FAMILIES[*]} " == *" $family "* ]]; then
        build "$family" "$ref"
        echo "$ref"
    fi
done

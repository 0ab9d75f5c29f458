#!/usr/bin/env bash
# Build the pipeline's container images, named and tagged as conf/containers.config says, each from the one
# containers/Dockerfile with its family's arguments (containers/images.py holds both).
#
#   containers/build.sh [--gpu] [FAMILY...]     public build: BASE = python slim image, packages from PyPI
#   containers/build.sh --offline [FAMILY...]   no registry pulls: a Debian base made with debootstrap and
#                                               `docker import`, wheels built on the host and installed with
#                                               --no-index (what `make test-containers` and CI use)
#   --gpu            CUDA builds of the family's framework (torch from PyPI, tensorflow[and-cuda])
#   --dry-run        print the docker build commands; needs no Docker daemon and builds nothing
#   --setup-docker   install docker.io + debootstrap (apt) and start dockerd when no daemon answers (root only)
#
# Cache (reused by later runs on the same machine): $CSREFINER_CONTAINER_CACHE, default ~/.cache/csrefiner-containers
#   base-<suite>.tar   the debootstrapped root file system       wheels/<family>-<hash>/   the wheelhouses
# and Docker's own layer cache: the dependency layer is rebuilt only when pyproject.toml or the pins change; it is
# tagged <image>-deps, and after a build the superseded csrefiner images (untagged, label org.csrefiner.build) are
# removed, so repeated builds do not fill the disk. Before building, free disk is checked (~5 GB per cold family).
set -euo pipefail
cd "$(dirname "$0")/.."

OFFLINE=0 GPU=0 SETUP=0 DRY=0 FAMILIES=()
for arg in "$@"; do
    case "$arg" in
        --offline) OFFLINE=1 ;;
        --gpu) GPU=1 ;;
        --setup-docker) SETUP=1 ;;
        --dry-run) DRY=1 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
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

wheelhouse() {  # wheels for one family's dependencies (built here, so sdists need no compiler in the image)
    local family=$1 pins key dir
    pins=$("$PYTHON" containers/images.py constraints "$family")
    # keyed on what the family installs, so unrelated pyproject.toml edits keep its wheels
    key=$({ "$PYTHON" containers/images.py requirements "$family"; cat "$pins"; } | sha256sum | cut -c1-12)
    dir="$CACHE/wheels/$family-$key"
    if [ "$DRY" = 1 ]; then echo "$dir"; return; fi
    if [ ! -f "$dir/.complete" ]; then
        log "wheelhouse for $family -> $dir"
        rm -rf "$dir" && mkdir -p "$dir"
        "$PYTHON" containers/images.py requirements "$family" >"$dir/requirements.txt"
        "$PYTHON" -m pip wheel --quiet --disable-pip-version-check -w "$dir" -c "$pins" \
            -r "$dir/requirements.txt" "setuptools>=68" wheel
        touch "$dir/.complete"
    fi
    echo "$dir"
}

build() {
    local family=$1 ref=$2 family_args wh=""
    mapfile -t family_args < <("$PYTHON" containers/images.py args "$family")
    local args=(-f containers/Dockerfile "${family_args[@]}" --build-arg "GPU=$GPU")
    if [ "$OFFLINE" = 1 ]; then
        wh=$(wheelhouse "$family")
        args+=(--network none --build-arg "BASE=$LOCAL_BASE" --build-arg "PIP_ARGS=--no-index --find-links /wheels")
    fi
    # The deps stage first, tagged <image>-deps: it stays the layer cache when superseded images are pruned.
    local deps_args=("${args[@]}") i
    for i in "${!deps_args[@]}"; do [ "${deps_args[$i]}" = --target ] && deps_args[i + 1]=deps; done
    if [ "$DRY" = 1 ]; then
        [ -n "$wh" ] && echo "# .whl/ <- $wh/*.whl"
        printf '%q ' docker build "${deps_args[@]}" -t "$ref-deps" . && echo
        printf '%q ' docker build "${args[@]}" -t "$ref" . && echo
        return
    fi
    rm -rf .whl && mkdir .whl
    [ -n "$wh" ] && { cp -l "$wh"/*.whl .whl/ 2>/dev/null || cp "$wh"/*.whl .whl/; }
    log "docker build $ref ($family)"
    docker build --quiet "${deps_args[@]}" -t "$ref-deps" . >/dev/null
    docker build --quiet "${args[@]}" -t "$ref" . >/dev/null
    rm -rf .whl
}

free_gb() { df -Pk "$(docker info -f '{{.DockerRootDir}}')" | awk 'NR == 2 { print int($4 / 1048576) }'; }

# A family whose deps image is missing writes its venv twice plus its wheels (~5 GB at most, cpsam/stardist);
# one with a cached deps stage writes a few MB. Superseded images of ours (label org.csrefiner.build) go first.
check_disk() {
    local need=1 ref
    for ref in "$@"; do docker image inspect "$ref-deps" >/dev/null 2>&1 || need=$((need + 5)); done
    if [ "$(free_gb)" -lt "$need" ]; then prune_superseded; fi
    local free
    free=$(free_gb)
    if [ "$free" -lt "$need" ]; then
        echo "containers/build.sh: the images need ~${need} GB free under $(docker info -f '{{.DockerRootDir}}'), ${free} GB is." >&2
        echo "  Free disk there, e.g. 'docker image prune -a' (removes every image no container uses; the next build is cold)." >&2
        exit 1
    fi
}

prune_superseded() {  # dangling images of earlier csrefiner builds: old tags and package stages, never a cache
    log "removing superseded csrefiner images: $(docker image prune -f --filter label=org.csrefiner.build | tail -1)"
}

if [ "$DRY" = 0 ]; then
    [ "$SETUP" = 1 ] && setup_docker
    docker info >/dev/null 2>&1 || { echo "no Docker daemon answers; run with --setup-docker (as root) or start one" >&2; exit 1; }
    [ "$OFFLINE" = 1 ] && local_base
fi

mapfile -t LINES < <("$PYTHON" containers/images.py)
SELECTED=()
for line in "${LINES[@]}"; do
    family=${line%% *}
    if [ ${#FAMILIES[@]} -eq 0 ] || [[ " ${FAMILIES[*]} " == *" $family "* ]]; then SELECTED+=("$line"); fi
done
[ "$DRY" = 1 ] || check_disk "${SELECTED[@]#* }"
for line in "${SELECTED[@]}"; do
    family=${line%% *} ref=${line#* }
    build "$family" "$ref"
    [ "$DRY" = 1 ] || echo "$ref"
done
[ "$DRY" = 1 ] || prune_superseded

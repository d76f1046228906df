#!/usr/bin/env bash
# Build the Debian packages of infermeter with dpkg-deb (no debhelper needed):
#
#   infermeter-agent      the device side: the agent daemon's unit, its user and folders, the
#                         udev rule for root-only energy counters, /etc/infermeter/agent.toml,
#                         and infermeter with its own dependencies only (grpcio, protobuf,
#                         psutil): none of the collector's.
#   infermeter-collector  the central side: all of the agent package, plus the collector's unit,
#                         user, state folder, /etc/infermeter/collector.env, and the collector
#                         extra. One host runs either package (they conflict: both own
#                         /usr/bin/infermeter); a host that runs both services takes this one.
#
# How Python gets there. A package holds wheels (/usr/lib/infermeter/wheels: infermeter and
# every dependency, built for the target's CPU, glibc and Python version), and its postinst
# makes a venv from them with the host's own /usr/bin/python3, offline
# (/usr/lib/infermeter/make-venv): /opt/infermeter/<agent|collector>/venv, behind
# /usr/bin/infermeter. Chosen over a venv built here and shipped whole because:
#   - a venv is not relocatable (its scripts and interpreter links name absolute paths), so a
#     shipped one must be built at its final path, on the target's distribution and CPU; the
#     wheels can be gathered for an arm64 Jetson (Python 3.10) on an amd64 machine, with no
#     emulation and nothing compiled (pip download --platform);
#   - installing needs no network: devices often reach only their collector;
#   - each install builds a new venv and switches to it atomically, so a failed upgrade keeps
#     the previous one running.
#
# Usage: packaging/build-deb.sh [options]
#   --package agent|collector|all   which packages (default all)
#   --arch amd64|arm64              the target's Debian architecture (default: this machine's)
#   --python-version X.Y            the target's python3 (default: that of $PYTHON). Debian 12:
#                                   3.11; Ubuntu 22.04 / JetPack 6: 3.10
#   --glibc X.Y                     the oldest glibc to support (default 2.31: Ubuntu 20.04)
#   --wheelhouse DIR                take the dependencies from DIR only, offline (default: the
#                                   package index, through pip's own configuration)
#   --out DIR                       where the .deb files go (default: dist/)
#   --revision N                    the Debian revision (default 1)
#   --compression xz|gzip|zstd|none dpkg-deb's compression (default xz)
# Environment: PYTHON, the interpreter that builds the wheel (pip and setuptools >= 77; default
# .venv/bin/python, else python3); DEB_MAINTAINER.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PACKAGING=$ROOT/packaging

packages=(agent collector)
arch=""
python_version=""
glibc=2.31
wheelhouse=""
out=$ROOT/dist
revision=1
compression=xz
maintainer=${DEB_MAINTAINER:-"infermeter maintainers <maintainers@infermeter.invalid>"}
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON=$ROOT/.venv/bin/python; else PYTHON=python3; fi
fi

die() {
    echo "build-deb.sh: $*" >&2
    exit 1
}

while [ $# -gt 0 ]; do
    case "$1" in
        --package)
            case "${2:-}" in
                agent | collector) packages=("$2") ;;
                all) packages=(agent collector) ;;
                *) die "--package takes agent, collector or all" ;;
            esac
            shift 2 ;;
        --arch) arch=${2:?}; shift 2 ;;
        --python-version) python_version=${2:?}; shift 2 ;;
        --glibc) glibc=${2:?}; shift 2 ;;
        --wheelhouse) wheelhouse=$(cd "${2:?}" && pwd); shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        --revision) revision=${2:?}; shift 2 ;;
        --compression) compression=${2:?}; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done

command -v dpkg-deb >/dev/null || die "dpkg-deb is needed (apt install dpkg)"
[ -n "$arch" ] || arch=$(dpkg --print-architecture)
case "$arch" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) die "no wheels for architecture $arch: amd64 or arm64" ;;
esac
[ -n "$python_version" ] || python_version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[[ "$python_version" =~ ^3\.([0-9]+)$ ]] || die "--python-version takes 3.X, got $python_version"
python_next=3.$((BASH_REMATCH[1] + 1))
[[ "$glibc" =~ ^2\.([0-9]+)$ ]] || die "--glibc takes 2.X, got $glibc"
glibc_minor=${BASH_REMATCH[1]}
mkdir -p "$out"
out=$(cd "$out" && pwd)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# 1. The infermeter wheel, from a copy of the source tree: the files git tracks or would track
# (so untracked work is in, ignored build leftovers are not: setuptools' build/ folder can hold
# modules deleted since).
echo "== infermeter wheel"
mkdir -p "$work/src" "$work/dist"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git -C "$ROOT" ls-files -z --cached --others --exclude-standard -- \
        pyproject.toml README.md 'LICENSE*' agent collector proto \
        | (cd "$ROOT" && while IFS= read -r -d '' file; do
            # Tracked files deleted in the work tree are listed too.
            if [ -f "$file" ]; then cp --parents "$file" "$work/src/"; fi
        done)
else
    (cd "$ROOT" && tar --exclude=__pycache__ --exclude='*.egg-info' -cf - pyproject.toml README.md agent collector proto) \
        | tar -C "$work/src" -xf -
fi
isolation=(--no-build-isolation)
"$PYTHON" -c 'import setuptools, sys; sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' 2>/dev/null \
    || isolation=()  # pip fetches setuptools into an isolated build environment
"$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps "${isolation[@]}" \
    --wheel-dir "$work/dist" "$work/src"
wheel=$(ls "$work/dist"/infermeter-*.whl)
version=$(basename "$wheel" | cut -d- -f2)
# PEP 440 pre-releases sort before the release in Debian only with a tilde: 1.0rc1 -> 1.0~rc1.
deb_version=$(echo "$version" | sed -E 's/\.?(a|b|rc|dev)([0-9]+)$/~\1\2/')-$revision

# The target's platform tags: every manylinux its glibc runs (pip does not expand the
# manylinux_2_X tags by itself).
platforms=()
for ((minor = glibc_minor; minor >= 5; minor--)); do
    platforms+=(--platform "manylinux_2_${minor}_${machine}")
done
platforms+=(--platform "manylinux2014_${machine}")
[ "$machine" = x86_64 ] && platforms+=(--platform manylinux2010_x86_64 --platform manylinux1_x86_64)
if [ -n "$wheelhouse" ]; then
    sources=(--no-index --find-links "$wheelhouse")
else
    sources=()
fi

# Files shipped verbatim: SOURCE under packaging/ -> PATH in the package (mode).
agent_files=(
    "systemd/infermeter-agent.service /lib/systemd/system/infermeter-agent.service 0644"
    "sysusers.d/infermeter.conf /usr/lib/sysusers.d/infermeter.conf 0644"
    "tmpfiles.d/infermeter.conf /usr/lib/tmpfiles.d/infermeter.conf 0644"
    "udev/70-infermeter-energy.rules /lib/udev/rules.d/70-infermeter-energy.rules 0644"
    "agent.toml /etc/infermeter/agent.toml 0644"
)
collector_files=(
    "systemd/infermeter-collector.service /lib/systemd/system/infermeter-collector.service 0644"
    "sysusers.d/infermeter-collector.conf /usr/lib/sysusers.d/infermeter-collector.conf 0644"
    "tmpfiles.d/infermeter-collector.conf /usr/lib/tmpfiles.d/infermeter-collector.conf 0644"
    # systemd reads it as root; it may hold the database password.
    "collector.env /etc/infermeter/collector.env 0600"
)

# download DEST REQUIREMENT...: wheels for the target, with their dependencies, into DEST.
download() {
    local dest=$1
    shift
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-cache-dir \
        --dest "$dest" --only-binary=:all: --find-links "$work/dist" \
        --implementation cp --python-version "$python_version" "${platforms[@]}" "${sources[@]}" "$@"
}

build_package() {
    local kind=$1 package=infermeter-$1 other requirement summary stage provides=""
    local -a entries
    stage=$work/$package
    case "$kind" in
        agent)
            other=infermeter-collector
            requirement=infermeter
            summary="infermeter agent: per-inference energy and cost metering for this device"
            entries=("${agent_files[@]}")
            units="infermeter-agent.service"
            state_dirs="/var/lib/infermeter"
            ;;
        collector)
            other=infermeter-agent
            requirement="infermeter[collector]"
            summary="infermeter collector: ingest, pricing and budgets for metered inferences"
            entries=("${agent_files[@]}" "${collector_files[@]}")
            units="infermeter-agent.service infermeter-collector.service"
            # It holds all of the agent package: apt may take it where infermeter-agent is asked.
            provides=$'Provides: infermeter-agent\n'
            state_dirs="/var/lib/infermeter /var/lib/infermeter-collector"
            ;;
    esac
    echo "== $package $deb_version ($arch, Python $python_version)"

    # The wheels: infermeter (this build) and its dependencies for the target, so that a
    # dependency with no wheel for it fails the build here, not the install there. pip picks
    # wheels for the target but evaluates markers for itself: missing-wheels.py then adds what
    # only the target needs (tomli on Python 3.10, say), until nothing is missing.
    local wheels=$stage/usr/lib/infermeter/wheels round missing
    local -a missing_list
    mkdir -p "$wheels"
    download "$wheels" "$requirement @ file://$wheel"
    for round in 1 2 3 4 5; do
        missing=$("$PYTHON" "$PACKAGING/missing-wheels.py" --python-version "$python_version" \
            --machine "$machine" "$wheels" "$requirement")
        [ -n "$missing" ] || break
        [ "$round" -lt 5 ] || die "wheels still missing for the target: $missing"
        mapfile -t missing_list <<<"$missing"
        echo "   and for Python $python_version on $machine: ${missing_list[*]}"
        download "$wheels" "${missing_list[@]}"
    done
    install -m 0755 "$PACKAGING/debian/make-venv" "$stage/usr/lib/infermeter/make-venv"

    local entry source target mode
    local -a files=()
    for entry in "${entries[@]}"; do
        read -r source target mode <<<"$entry"
        install -D -m "$mode" "$PACKAGING/$source" "$stage$target"
        files+=("$target")
    done
    mkdir -p "$stage/usr/bin"
    ln -s "/opt/infermeter/$kind/venv/bin/infermeter" "$stage/usr/bin/infermeter"
    install -D -m 0644 "$PACKAGING/debian/copyright" "$stage/usr/share/doc/$package/copyright"

    mkdir -p "$stage/DEBIAN"
    printf '%s\n' "${files[@]}" | grep '^/etc/' >"$stage/DEBIAN/conffiles"
    local sysusers tmpfiles script
    sysusers=$(printf '%s\n' "${files[@]}" | grep '^/usr/lib/sysusers.d/' | tr '\n' ' ')
    tmpfiles=$(printf '%s\n' "${files[@]}" | grep '^/usr/lib/tmpfiles.d/' | tr '\n' ' ')
    for script in postinst prerm postrm; do
        sed -e "s|@PACKAGE@|$package|g" -e "s|@HOME@|/opt/infermeter/$kind|g" \
            -e "s|@REQUIREMENT@|$requirement==$version|g" -e "s|@UNITS@|$units|g" \
            -e "s|@SYSUSERS@|${sysusers% }|g" -e "s|@TMPFILES@|${tmpfiles% }|g" \
            -e "s|@STATE_DIRS@|$state_dirs|g" \
            "$PACKAGING/debian/$script.in" >"$stage/DEBIAN/$script"
        chmod 0755 "$stage/DEBIAN/$script"
        if grep -q '@[A-Z_]*@' "$stage/DEBIAN/$script"; then
            die "$script: a placeholder is left: $(grep -o '@[A-Z_]*@' "$stage/DEBIAN/$script" | head -n 1)"
        fi
    done

    cat >"$stage/DEBIAN/control" <<EOF
Package: $package
Version: $deb_version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
Depends: python3 (>= $python_version), python3 (<< $python_next), python3-venv, systemd | systemd-standalone-sysusers, systemd | systemd-standalone-tmpfiles
Recommends: systemd
Conflicts: $other
Replaces: $other
${provides}Section: net
Priority: optional
Homepage: https://github.com/infermeter/infermeter
Description: $summary
 What each AI inference really costs, wherever it runs: per-inference metering, energy,
 pricing and budgets for edge, on-prem and cloud. Python and its dependencies are installed
 from the wheels in /usr/lib/infermeter/wheels into a venv under /opt/infermeter, offline.
EOF

    local deb=$out/${package}_${deb_version}_${arch}.deb
    dpkg-deb --root-owner-group -Z"$compression" --build "$stage" "$deb" >/dev/null
    echo "$deb"
}

for kind in "${packages[@]}"; do
    build_package "$kind"
done

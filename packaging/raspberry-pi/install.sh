#!/usr/bin/env bash
# Install edgeinf as a service on a Raspberry Pi (or any Debian-like Linux with systemd):
# a service user, a virtual environment, a model sized to the board's memory, the units.
# Usage: sudo packaging/raspberry-pi/install.sh [SOURCE]   (SOURCE: a path or a pip spec)
set -euo pipefail

source=${1:-edgeinf}
prefix=/opt/edgeinf
data=/var/lib/edgeinf
here=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" -ne 0 ]; then
  echo "run as root (sudo $0)" >&2
  exit 1
fi

apt-get install -y --no-install-recommends python3-venv python3-dev build-essential cmake
id edgeinf >/dev/null 2>&1 || useradd --system --home "$data" --shell /usr/sbin/nologin edgeinf
install -d -o edgeinf -g edgeinf -m 0700 "$data" "$data/models" "$data/state"

python3 -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install --upgrade pip
"$prefix/venv/bin/pip" install "$source"

# The largest catalog model that leaves room for the system: RAM in MiB.
mem=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
if [ "$mem" -ge 3500 ]; then
  model=qwen2.5-coder-1.5b-instruct-q4_k_m
elif [ "$mem" -ge 1500 ]; then
  model=qwen2.5-coder-0.5b-instruct-q4_k_m
else
  model=gemma-3-270m-q4_k_m
fi
sudo -u edgeinf EDGEINF_MODELS_DIR="$data/models" "$prefix/venv/bin/edgeinf" pull "$model"
install -d -m 0755 /etc/edgeinf
cat > /etc/edgeinf/config.toml <<CONF
default_model = "$model"
models_dir = "$data/models"
state_dir = "$data/state"
parallel = 1
# A board shares its memory with everything else: give it back after 15 idle minutes.
keep_alive_s = 900
CONF

install -m 0644 "$here/systemd/edgeinf.service" "$here/systemd/edgeinf.socket" /etc/systemd/system/
mkdir -p /etc/systemd/system/edgeinf.service.d
printf '[Service]\nEnvironment=EDGEINF_CONFIG=/etc/edgeinf/config.toml\n' \
  > /etc/systemd/system/edgeinf.service.d/config.conf
systemctl daemon-reload
systemctl enable --now edgeinf.socket edgeinf.service
echo "edgeinf serves $model on http://127.0.0.1:8088 (systemctl status edgeinf)"

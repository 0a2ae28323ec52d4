#!/usr/bin/env bash
# Shared by the benchmark scripts (sourced): the binaries, dpmaster 2.2 built from
# ../shared/peers, and helpers to start masters, register fleets and run list loads. Every
# step is bounded in time; everything runs on loopback.

cargo build --release --workspace -q
# What this run measures, for its report (benches/measured.py): the commit built, and whether the
# tree had uncommitted changes (docs/benchmarks.md, the reports' own output, aside).
record_commit() {
    { git rev-parse --short HEAD
      git status --porcelain --untracked-files=no -- . ':!docs/benchmarks.md' | grep -q . && echo dirty
    } >"$1/commit.txt" || true
}
record_commit "$OUT"
M=target/release/muster
L=target/release/muster-loadgen
CPUS=$(nproc)
TICK=$(getconf CLK_TCK)

if [ -z "${DPMASTER:-}" ] && [ -d ../shared/peers/dpmaster ]; then
    d=target/peers
    if [ ! -x "$d/dpmaster/dpmaster" ]; then
        rm -rf "$d" && mkdir -p "$d" && cp -r ../shared/peers/dpmaster "$d/"
        make -s -C "$d/dpmaster" release >/dev/null
    fi
    DPMASTER="$d/dpmaster/dpmaster"
fi
DPMASTER="${DPMASTER:-}"

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
sys_ticks() { awk '{ print $15 }' "/proc/$1/stat"; }  # the kernel's part (stime) alone
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
LG1=""; [ "$CPUS" -gt 1 ] && LG1="taskset -c 1-$((CPUS - 1))"

# The same receive buffer for every master. muster asks SO_RCVBUF = sockets.recv_buffer_kib (4 MiB
# by default), which the kernel caps at net.core.rmem_max and doubles (socket(7)); dpmaster never
# sets SO_RCVBUF, so its socket gets net.core.rmem_default. For the run, rmem_max is raised to
# muster's ask if it is below, and while dpmaster creates its socket rmem_default is what muster's
# sockets get (then put back at once: clients keep the kernel's default); both are restored when
# the script exits. Each start checks the buffer its sockets got (`ss -m`, rb). Needs root.
RCVBUF_ASK=$(( $($M default-config | awk -F= '/^recv_buffer_kib/ { print $2 + 0 }') * 1024 ))
RMEM_MAX0=$(sysctl -n net.core.rmem_max)
RMEM_DEFAULT0=$(sysctl -n net.core.rmem_default)
restore_rmem() { sysctl -q -w net.core.rmem_max="$RMEM_MAX0" net.core.rmem_default="$RMEM_DEFAULT0" || true; }
# On any exit (a failed step included) the master still running is stopped too.
PID=""
on_exit() { if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi; restore_rmem; }
trap on_exit EXIT
trap 'exit 130' INT TERM
[ "$RMEM_MAX0" -ge "$RCVBUF_ASK" ] || sysctl -q -w net.core.rmem_max="$RCVBUF_ASK"
RCVBUF=$(( 2 * RCVBUF_ASK ))
echo "$RCVBUF" >"$OUT/rcvbuf.txt"
# rcvbuf PORT: the receive buffer (`ss -m` rb, bytes) of the UDP sockets bound to PORT, one line
# per distinct value.
rcvbuf() { ss -uamn "sport = :$1" | grep -o 'rb[0-9]*' | tr -d rb | sort -u; }
# check_rcvbuf PORT WHO: fails the run unless every socket on PORT has RCVBUF.
check_rcvbuf() {
    local got; got=$(rcvbuf "$1" | tr '\n' ' ')
    [ "$got" = "$RCVBUF " ] || { echo "$2: receive buffer ${got:-none}, not $RCVBUF"; exit 1; }
}

PID=""; ADDR=""
# start_muster CORES [flags…]: muster on 127.0.0.1. With --cores 1 it runs under `taskset -c 0`:
# every thread of the process (the core, which pins itself to its first allowed CPU, and the list
# builder, control and HTTP threads, which do not) on CPU 0, as dpmaster, so the master's CPU
# figures compare one CPU with one CPU.
start_muster() {
    local cores=$1; shift
    local port; port=$(free_port)
    local pin=""; [ "$cores" = 1 ] && pin="taskset -c 0"
    $pin $M serve --config benches/bench.toml --listen "127.0.0.1:$port" --cores "$cores" --allow-private \
        --max-servers-per-ip 64 "$@" \
        >"$OUT/master.out" 2>"$OUT/master.err" &
    PID=$!
    for _ in $(seq 100); do grep -q "serving on" "$OUT/master.out" && break; sleep 0.1; done
    grep -q "serving on" "$OUT/master.out" || { cat "$OUT/master.err"; exit 1; }
    ADDR="127.0.0.1:$port"
    check_rcvbuf "$port" muster
}
# start_dpmaster [flags…]: dpmaster on CPU 0, quiet (-v 1: errors only; its default logs every
# packet), its socket created while net.core.rmem_default is muster's buffer.
start_dpmaster() {
    local port; port=$(free_port)
    local jail; jail=$(mktemp -d)
    sysctl -q -w net.core.rmem_default="$RCVBUF"
    taskset -c 0 "$DPMASTER" -j "$jail" -l 127.0.0.1 -p "$port" --allow-loopback -n 1100000 -N 64 -v 1 "$@" \
        >"$OUT/master.out" 2>&1 &
    PID=$!
    ADDR="127.0.0.1:$port"
    for _ in $(seq 50); do [ -n "$(rcvbuf "$port")" ] && break; sleep 0.1; done
    sysctl -q -w net.core.rmem_default="$RMEM_DEFAULT0"
    check_rcvbuf "$port" dpmaster
}
stop_master() { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; }

# listed ADDR MODE: servers on the list (one query).
# listed ADDR MODE: how many servers ADDR lists, asked by a client with a 64 MiB receive buffer (a
# default buffer holds ~90 of dpmaster's unpaced datagrams, ~18,000 servers: a master's list, not
# the client's buffer, is what is counted).
listed() {
    $L query --target "$1" --mode "$2" --count 1 --timeout 3 --source-base 61 --recv-buffer-kib 65536 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["entries_received"])'
}
# listed_wait ADDR MODE EXPECT: the list once it holds EXPECT, or after 5 s (each core's merged
# list lags by up to one refresh; dpmaster lists at once).
listed_wait() {
    local got=0
    for _ in $(seq 25); do
        got=$(listed "$1" "$2")
        [ "$got" -ge "$3" ] && break
        sleep 0.2
    done
    echo "$got"
}
# Fleet ports: fixed, so a second run re-registers the same servers.
FLEET_PORT=20000

# register ADDR N PROTOCOL BASE TAG [MODE EXPECT]: the fleet registers N servers and records the
# master's CPU over that first round; with MODE, again (up to 3 rounds) until EXPECT are listed
# (a DP registration lost on the way has no retry in the protocol).
register() {
    local addr=$1 n=$2 proto=$3 base=$4 tag=$5 mode=${6:-} expect=${7:-0}
    local port=$((FLEET_PORT + base))
    local c0; c0=$(cpu_ticks "$PID")
    $LG1 $L fleet --target "$addr" --servers "$n" --protocol "$proto" --per-host 32 --rate 50000 \
        --count "$n" --duration 300 --source-base "$base" --port "$port" --json "$OUT/$tag.fleet.json" >/dev/null
    local c1; c1=$(cpu_ticks "$PID")
    echo "$(( c1 - c0 ))" >"$OUT/$tag.regcpu.txt"
    [ -n "$mode" ] || return 0
    for _ in 1 2 3; do
        [ "$(listed_wait "$addr" "$mode" "$expect")" -ge "$expect" ] && break
        $LG1 $L fleet --target "$addr" --servers "$n" --protocol "$proto" --per-host 32 --rate 10000 \
            --count "$n" --duration 300 --source-base "$base" --port "$port" >/dev/null
    done
    listed_wait "$addr" "$mode" "$expect" >"$OUT/$tag.listed.txt"
}

# query_load ADDR TAG MODE EXPECT [pin]: closed-loop list load, the master's CPU over it.
query_load() {
    local addr=$1 tag=$2 mode=$3 expect=$4 pin=${5:-}
    local c0; c0=$(cpu_ticks "$PID")
    /usr/bin/time -o "$OUT/$tag.lgtime.txt" -f "%U %S" $pin $L query --target "$addr" --mode "$mode" \
        --concurrency "$CONC" --duration "$DUR" --expect "$expect" --json "$OUT/$tag.json" >/dev/null
    local c1; c1=$(cpu_ticks "$PID")
    echo "$(( c1 - c0 ))" >"$OUT/$tag.cpu.txt"
}


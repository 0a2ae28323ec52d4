# muster in a container. Build:  docker build -t muster .
# Run (io_uring is blocked by Docker's default seccomp profile since Docker 25, and its rings
# need locked memory):
#   docker run -d --name muster \
#     --security-opt seccomp=contrib/docker/seccomp-io_uring.json \
#     --ulimit memlock=8388608:8388608 \
#     -p 27010:27010/udp -p 27011:27011/udp -p 27950:27950/udp -p 127.0.0.1:27080:27080 \
#     -v muster-state:/var/lib/muster muster

# ---- build ------------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crates.io download and the target directory between builds (BuildKit,
# the default builder since Docker 23); the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p muster \
 && install -m 0755 target/release/muster /usr/local/bin/muster

# ---- runtime ----------------------------------------------------------------------------------
FROM debian:bookworm-slim
# A fixed, unprivileged uid/gid so a bind-mounted state directory can be chowned to match.
RUN groupadd --system --gid 10001 muster \
 && useradd --system --uid 10001 --gid muster --home-dir /var/lib/muster --shell /usr/sbin/nologin muster \
 && install -d -o muster -g muster -m 0700 /var/lib/muster
COPY --from=build /usr/local/bin/muster /usr/local/bin/muster
USER muster:muster
WORKDIR /var/lib/muster
VOLUME /var/lib/muster
# Valve master (27010, 27011 for GoldSrc/Xash), Quake III / DarkPlaces (27950), control page.
EXPOSE 27010/udp 27011/udp 27950/udp 27080/tcp
ENTRYPOINT ["muster"]
CMD ["serve", "--state-file", "/var/lib/muster/state", "--http", "0.0.0.0:27080"]

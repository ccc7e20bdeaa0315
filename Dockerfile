# syntax=docker/dockerfile:1
# The three release binaries (admin-api, reconciler, uosctl) on a distroless base. Built by the
# GitHub workflow: the project's own machines run no container daemon.

# The toolchain rust-toolchain.toml pins. The full (not slim) image already has what the C
# dependencies build with (gcc, make and perl for librdkafka, pkg-config and libssl-dev for
# git2's https), so this stage installs no packages.
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
# RUSTUP_TOOLCHAIN: the toolchain file also lists clippy and rustfmt, which a release build does
# not use; naming the image's own toolchain skips downloading them.
# LIBZ_SYS_STATIC: zlib is linked into the binaries (librdkafka and libgit2 use it), because the
# runtime image has no libz.
ENV RUSTUP_TOOLCHAIN=1.95.0 \
    LIBZ_SYS_STATIC=1
COPY . .
# The cargo registry and target dir are cache mounts, so the binaries are copied out in the same
# step; /out/data becomes the data directory, owned by the runtime user.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin admin-api --bin reconciler --bin uosctl \
    && mkdir -p /out/bin /out/data \
    && cp target/release/admin-api target/release/reconciler target/release/uosctl /out/bin/

# glibc, libgcc and OpenSSL 3 (git2's https) and CA certificates, nothing else: no shell, no
# package manager. Same Debian release as the build stage, so the glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data/ /var/lib/uos/
# The relative defaults (data_dir `.uos`, the SQLite file `.uos/uos.db`) land in the writable
# /var/lib/uos; Kubernetes mounts an emptyDir there over the read-only root filesystem.
WORKDIR /var/lib/uos
# Numeric, so Kubernetes can check runAsNonRoot against the image (65532 is distroless' nonroot).
USER 65532:65532
# The built-in defaults listen on loopback, which nothing outside the container reaches.
# mimalloc returns freed memory to the system at once instead of keeping it committed (the
# 19 MiB of a password hash, a burst of connections' buffers): the resident size then follows
# the load instead of staying at its peak. The benches start the server with the same two
# (`IMAGE_ENV` in xtask/src/bench.rs).
ENV UOS_LISTEN=0.0.0.0:8080 \
    UOS_DECLARATIVE__LISTEN=0.0.0.0:8081 \
    MIMALLOC_ARENA_EAGER_COMMIT=0 \
    MIMALLOC_PURGE_DELAY=0
# 8080: admin-api (API, /healthz, /readyz, /metrics); 8081: reconciler (/healthz, /metrics).
EXPOSE 8080 8081
ENTRYPOINT ["/usr/local/bin/admin-api"]

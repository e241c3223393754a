# syntax=docker/dockerfile:1
# velero-hook-injector container image (linux/amd64 or linux/arm64, whichever the builder runs).
#
#   docker build -t velero-hook-injector:dev .
#
# Build stage: the locked dependency set (Cargo.lock), release profile. The whole source tree is
# copied (filtered by .dockerignore) because Cargo.toml declares bench/test targets whose files
# must exist for the manifest to load; BuildKit cache mounts keep the registry and target/
# between builds, so only changed crates are recompiled.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin velero-hook-injector \
 && install -D -m 0755 target/release/velero-hook-injector /out/velero-hook-injector

# Runtime: distroless with glibc and libgcc only (no shell, no package manager), running as the
# image's non-root user 65532:65532. With --tls-cert/--tls-key the server writes nothing, so the
# chart runs it on a read-only root filesystem.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/velero-hook-injector /usr/local/bin/velero-hook-injector
USER 65532:65532
EXPOSE 8443
ENTRYPOINT ["/usr/local/bin/velero-hook-injector"]
CMD ["serve", "--addr", "0.0.0.0:8443", "--tls-cert", "/tls/tls.crt", "--tls-key", "/tls/tls.key", "--log-format", "json"]

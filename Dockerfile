# syntax=docker/dockerfile:1
# Multi-stage build (docs/container.md): the toolchain stage builds the
# release binary from Cargo.lock; the runtime stage is Debian slim with the
# binary, a non-root user and the data directory as a volume.
#   docker build -t switchyard .
#   docker run -p 8080:8080 -v switchyard-data:/var/lib/switchyard switchyard

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The caches keep the registry and the target directory between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchyard \
 && cp target/release/switchyard /usr/local/bin/switchyard

FROM debian:bookworm-slim
# No CA bundle or OpenSSL needed: TLS is rustls with the webpki roots
# compiled in, SQLite is bundled. tini-like signal handling is not needed
# either: the gateway handles SIGTERM itself (drains, flushes usage).
RUN useradd --system --user-group --uid 10001 --home-dir /var/lib/switchyard \
        --shell /usr/sbin/nologin switchyard \
 && mkdir -p /var/lib/switchyard /etc/switchyard \
 && chown switchyard:switchyard /var/lib/switchyard \
 && chmod 0750 /var/lib/switchyard
COPY --from=builder /usr/local/bin/switchyard /usr/local/bin/switchyard
USER switchyard:switchyard
WORKDIR /var/lib/switchyard
VOLUME ["/var/lib/switchyard"]
ENV SWITCHYARD__SERVER__LISTEN=0.0.0.0:8080
EXPOSE 8080
# The image has no curl: the binary asks its own /healthz (on
# server.listen from the same settings) and exits 0 or 1.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["switchyard", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["switchyard"]
CMD ["serve"]

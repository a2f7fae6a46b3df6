# Multi-stage build: compile in the Rust image, run in a slim Debian as a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY migrations ./migrations
COPY src ./src
COPY templates ./templates
COPY assets ./assets
RUN cargo build --release --locked --bin epusdt

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home /var/lib/epusdt --create-home epusdt
COPY --from=build /src/target/release/epusdt /usr/local/bin/epusdt
USER epusdt
WORKDIR /var/lib/epusdt
ENV EPUSDT_HTTP_LISTEN=0.0.0.0:8000 \
    EPUSDT_DATA_DIR=/var/lib/epusdt/data
EXPOSE 8000
VOLUME ["/var/lib/epusdt/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8000/health || exit 1
ENTRYPOINT ["/usr/local/bin/epusdt"]
CMD ["serve"]

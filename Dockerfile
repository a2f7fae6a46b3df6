# epusdt container image: a stripped release binary on a minimal Debian, run as uid 10001.
#
#   docker build -t epusdt .                                  # compiles in the Rust image
#   docker build -t epusdt --build-arg BINARY=prebuilt .      # uses ./target-docker/epusdt
#
# BINARY=prebuilt copies a binary built on the host (same glibc as bookworm or older:
# `cargo build --release --locked --bin epusdt && install -D target/release/epusdt target-docker/epusdt`)
# instead of compiling; tools/docker_smoke.sh does that where no registry serves the Rust image.
# Base images are pinned by version (pin them by digest too, `image:tag@sha256:…`, where your
# registry serves them); tools/docker_base.sh makes RUNTIME_IMAGE locally with debootstrap.
# Needs BuildKit (Docker ≥ 23, or DOCKER_BUILDKIT=1), which skips the stage BINARY does not pick.
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-20250520-slim
ARG BINARY=compiled

# --- compiled: build inside the Rust image, dependencies in their own cached layer -------------
FROM ${RUST_IMAGE} AS compiled
WORKDIR /src
# 1. Only the manifests and stub sources: this layer (all dependencies compiled) is reused until
#    Cargo.toml / Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY migrations/Cargo.toml migrations/Cargo.toml
RUN mkdir -p src migrations/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs migrations/src/lib.rs \
 && cargo build --release --locked --bin epusdt \
 && rm -rf src migrations/src
# 2. The real sources.
COPY migrations ./migrations
COPY src ./src
COPY templates ./templates
COPY assets ./assets
RUN touch src/main.rs src/lib.rs migrations/src/lib.rs \
 && cargo build --release --locked --bin epusdt \
 && mkdir -p /out && install -m 0755 target/release/epusdt /out/epusdt \
 && strip /out/epusdt

# --- prebuilt: a binary built on the host, from target-docker/epusdt in the build context -------
FROM ${RUNTIME_IMAGE} AS prebuilt
COPY target-docker/epusdt /out/epusdt
RUN test -x /out/epusdt

FROM ${BINARY} AS binary

# --- runtime ------------------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS runtime
# The data directory exists in the image owned by epusdt, so a named volume mounted there starts
# owned by epusdt (Docker copies ownership into a new, empty volume).
RUN groupadd --gid 10001 epusdt \
 && useradd --no-create-home --uid 10001 --gid 10001 --home-dir /var/lib/epusdt --shell /usr/sbin/nologin epusdt \
 && install -d -o epusdt -g epusdt -m 0700 /var/lib/epusdt /var/lib/epusdt/data
COPY --from=binary /out/epusdt /usr/local/bin/epusdt
# (Both are mode 0755 already: a RUN chmod would copy the binary into one more layer.)
COPY deploy/docker-entrypoint.sh /usr/local/bin/docker-entrypoint
USER 10001:10001
WORKDIR /var/lib/epusdt
ENV EPUSDT_HTTP_LISTEN=0.0.0.0:8000 \
    EPUSDT_DATA_DIR=/var/lib/epusdt/data
EXPOSE 8000
VOLUME ["/var/lib/epusdt/data"]
# `epusdt healthcheck` exits non-zero unless /health says "ok": the database, the queue and every
# chain watcher (a failed or stalled watcher makes it "degraded").
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/epusdt", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/docker-entrypoint"]
CMD ["serve"]

# syntax=docker/dockerfile:1
# Multi-stage: dependencies in their own cached layer, a stripped release build, then a slim runtime running as a
# numeric non-root user.
#
# Base images are pinned by digest, so a rebuild gets the same bytes. To move to newer ones, look up the current
# digests and replace both ARG defaults (or pass --build-arg):
#   docker buildx imagetools inspect rust:1.97.1-bookworm --format '{{json .Manifest.Digest}}'
#   docker buildx imagetools inspect debian:bookworm-slim --format '{{json .Manifest.Digest}}'
ARG RUST_IMAGE=rust:1.97.1-bookworm@sha256:14bc9c5966e7b3a385794b3d5389a8765668342025fbcc7b2e3d2866ac4bd8c3
ARG RUNTIME_IMAGE=debian:bookworm-slim@sha256:4b50eb66f977b4062683ff434ef18ac191da862dbe966961bc11990cf5791a8d

FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Strip symbols in the build itself (set for both cargo runs, so the dependency layer's profile matches).
ENV CARGO_PROFILE_RELEASE_STRIP=symbols
# 1. Dependencies only: the manifests and a stub crate. This layer is rebuilt only when Cargo.toml or
#    Cargo.lock change, not on every source change.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src tests/bench config \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > tests/bench/store.rs \
    && TOKENMINT_GIT_COMMIT=deps cargo build --release --locked --bin tokenmint \
    && rm -rf src
# 2. The service itself. `touch` makes cargo see the sources as newer than the stub's artifacts.
COPY src ./src
COPY config ./config
ARG GIT_COMMIT=unknown
RUN touch src/main.rs src/lib.rs \
    && TOKENMINT_GIT_COMMIT="${GIT_COMMIT}" cargo build --release --locked --bin tokenmint

FROM ${RUNTIME_IMAGE}
ARG GIT_COMMIT=unknown
LABEL org.opencontainers.image.title="tokenmint" \
      org.opencontainers.image.description="Self-hosted token service: Twilio-style Access Tokens, NetEase Yunxin getToken and MeCloud accesstokens" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${GIT_COMMIT}"
RUN groupadd --system --gid 10001 tokenmint \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tokenmint --create-home tokenmint \
    && mkdir -p /var/lib/tokenmint/data && chown -R 10001:10001 /var/lib/tokenmint
COPY --from=build /src/target/release/tokenmint /usr/local/bin/tokenmint
# Production profile: no sample tenants; accounts and secrets come from TOKENMINT_* variables or a mounted file
# (TOKENMINT_CONFIG=/etc/tokenmint/tokenmint.toml). Nothing secret is baked into the image. The store lives on
# the data volume; /metrics answers on the main port unless TOKENMINT_METRICS__PORT gives it its own.
ENV TOKENMINT_ENV=production \
    TOKENMINT_SERVER__HOST=0.0.0.0 \
    TOKENMINT_SERVER__PORT=8080 \
    TOKENMINT_LOG__FORMAT=json \
    TOKENMINT_STORE__EMBEDDED__PATH=/var/lib/tokenmint/data/tokenmint.redb
WORKDIR /var/lib/tokenmint
USER 10001:10001
VOLUME ["/var/lib/tokenmint/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["tokenmint", "healthcheck"]
ENTRYPOINT ["tokenmint"]
CMD ["serve"]

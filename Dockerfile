# syntax=docker/dockerfile:1
# Multi-stage: a release build, then a slim runtime running as a non-root user.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
RUN cargo build --release --locked --bin tokenmint

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/tokenmint --create-home tokenmint \
    && mkdir -p /var/lib/tokenmint/data && chown -R tokenmint:tokenmint /var/lib/tokenmint
COPY --from=build /src/target/release/tokenmint /usr/local/bin/tokenmint
# Production profile: no sample tenants; accounts and secrets come from TOKENMINT_* variables or a mounted file
# (TOKENMINT_CONFIG=/etc/tokenmint/tokenmint.toml). Nothing secret is baked into the image.
ENV TOKENMINT_ENV=production \
    TOKENMINT_SERVER__HOST=0.0.0.0 \
    TOKENMINT_SERVER__PORT=8080 \
    TOKENMINT_LOG__FORMAT=json
WORKDIR /var/lib/tokenmint
USER tokenmint
VOLUME ["/var/lib/tokenmint/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 CMD ["tokenmint", "healthcheck"]
ENTRYPOINT ["tokenmint"]
CMD ["serve"]

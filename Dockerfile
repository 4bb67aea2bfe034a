# The Sluice image: sluice-gateway and sluice-executor on Debian bookworm,
# run as a non-root user under tini, with a health check on the HTTP port.
#
# From source (pulls the Rust image from a registry):
#     docker build -t sluice .
# From binaries built on the host (no registry; only a Debian base image,
# which `mmdebstrap` + `docker import` can make, see tests/compose.sh):
#     mkdir -p prebuilt && cp "$CARGO_TARGET_DIR"/release/sluice-{gateway,executor} prebuilt/
#     docker build --build-arg BUILDER=debian:bookworm-slim -t sluice .
#
# The gateway is the default command; run `sluice-executor` for a worker.
# Every flag has a SLUICE_* environment twin (see `sluice-gateway --help`).

ARG BUILDER=rust:1.95-bookworm

FROM ${BUILDER} AS build
WORKDIR /src
COPY . .
RUN mkdir -p /out \
    && if [ -x prebuilt/sluice-gateway ] && [ -x prebuilt/sluice-executor ]; then \
         cp prebuilt/sluice-gateway prebuilt/sluice-executor /out/; \
       else \
         cargo build --release --locked -p sluice-gateway -p sluice-executor \
         && cp target/release/sluice-gateway target/release/sluice-executor /out/; \
       fi

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tini ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/sluice --create-home sluice
COPY --from=build /out/sluice-gateway /out/sluice-executor /usr/local/bin/
COPY docker/healthcheck /usr/local/bin/sluice-healthcheck
USER 10001:10001
WORKDIR /var/lib/sluice
ENV SLUICE_DATA_DIR=/var/lib/sluice \
    SLUICE_PG_LISTEN=0.0.0.0:5432 \
    SLUICE_FLIGHT_LISTEN=0.0.0.0:32010 \
    SLUICE_HTTP_LISTEN=0.0.0.0:8080 \
    SLUICE_WORK_DIR=/tmp/sluice-work
EXPOSE 5432 32010 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 CMD ["sluice-healthcheck"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["sluice-gateway"]

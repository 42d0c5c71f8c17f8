# The ManMan binaries (and the worker's per-server shim) in a small image that runs as a non-root
# user.
#   docker build -t manman .
#   docker run --rm -p 8000:8000 -e MANMAN_POSTGRES_URL=… -e MANMAN_RABBITMQ_URL=… manman
# The default command is the host; run `manman-worker` or `manman` by naming them.

FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p manman-host -p manman-worker -p manman -p manman-shim \
 && strip target/release/manman-host target/release/manman-worker target/release/manman \
          target/release/manman-shim

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 manman \
 && useradd --system --uid 10001 --gid manman --home-dir /var/lib/manman --create-home manman
COPY --from=build /src/target/release/manman-host /src/target/release/manman-worker /src/target/release/manman \
     /src/target/release/manman-shim /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/manman
ENV MANMAN_BIND=0.0.0.0:8000 \
    MANMAN_LOG_FORMAT=json
EXPOSE 8000
# tini forwards SIGTERM, so the host drains and a worker stops its game servers.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["manman-host"]

# syntax=docker/dockerfile:1
# One recipe for every surveyhooks service image; the SERVICE build argument picks the binary
# (services/<SERVICE>/cmd/<SERVICE>):
#
#   docker build --build-arg SERVICE=delivery -t surveyhooks/delivery .
#
# docker-compose.yml builds ingest, fanout, delivery, sink and api this way. The deploy module's
# tests check that every module of go.work is copied below and that every service binary exists.

FROM golang:1.26 AS build
WORKDIR /src
# Static binaries with the toolchain the image ships (no toolchain download at build time).
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

# Module downloads get their own layer, rebuilt only when a go.mod or go.sum changes.
# The go.sum* globs tolerate a module without dependencies (no go.sum).
COPY go.work go.work.sum* ./
COPY proto/go.mod proto/go.sum* proto/
COPY pkg/go.mod pkg/go.sum* pkg/
COPY deploy/go.mod deploy/go.sum* deploy/
COPY services/ingest/go.mod services/ingest/go.sum* services/ingest/
COPY services/fanout/go.mod services/fanout/go.sum* services/fanout/
COPY services/delivery/go.mod services/delivery/go.sum* services/delivery/
COPY services/sink/go.mod services/sink/go.sum* services/sink/
COPY services/api/go.mod services/api/go.sum* services/api/
COPY services/surveyhooks/go.mod services/surveyhooks/go.sum* services/surveyhooks/
COPY services/loadgen/go.mod services/loadgen/go.sum* services/loadgen/
RUN go mod download

COPY . .
ARG SERVICE
RUN --mount=type=cache,target=/root/.cache/go-build \
    if [ -z "$SERVICE" ] || [ ! -d "services/$SERVICE/cmd/$SERVICE" ]; then \
      echo "set --build-arg SERVICE to one of: ingest fanout delivery sink api (got '$SERVICE')" >&2; exit 1; \
    fi && \
    go build -trimpath -ldflags="-s -w" -o /out/service "./services/$SERVICE/cmd/$SERVICE"

# distroless/static: no shell, no package manager, CA certificates and tzdata only; runs as
# the unprivileged "nonroot" user (65532).
FROM gcr.io/distroless/static-debian12:nonroot
ARG SERVICE
LABEL org.opencontainers.image.title="surveyhooks-${SERVICE}" \
      org.opencontainers.image.source="https://github.com/surveyhooks/surveyhooks"
COPY --from=build /out/service /usr/local/bin/service
USER nonroot:nonroot
# ingest 8080, api 8081, every service's ops server (/metrics, /healthz, /readyz) 9464.
EXPOSE 8080 8081 9464
ENTRYPOINT ["/usr/local/bin/service"]

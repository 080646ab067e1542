# Multi-stage build of argo-completion-webhook: a static binary on distroless static, non-root.
# Base images are pinned by version; pin them by digest too in your registry mirror.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Module files first, so the dependency download is cached between source changes.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY repair/ repair/
COPY rules/ rules/
COPY webhook/ webhook/
ARG VERSION=dev
# The same command as `make build`: static (no cgo), reproducible paths, version injected.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/argo-completion-webhook ./cmd/argo-completion-webhook

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/argo-completion-webhook /argo-completion-webhook
# distroless nonroot: UID/GID 65532, matching the Deployment's securityContext.
USER 65532:65532
EXPOSE 9443 8080 8081
ENTRYPOINT ["/argo-completion-webhook"]

# syntax=docker/dockerfile:1
# One image for every Switchyard service: the container's command picks which one
# (router, pricing, gateway, sim-provider, publish, tail, ...). See docker-compose.yml and
# deploy/kubernetes/.
#   docker build -t switchyard:0.1.0 .
#
# Node 24 (LTS, supported to 2028-04), pinned to a release so a rebuild is the same image;
# package.json's engines (>=20.19) allow it. Bump NODE_VERSION deliberately.
ARG NODE_VERSION=24.20.0

# ---- build: the TypeScript compiled to dist/ (npm run build), with dev dependencies --------
FROM node:${NODE_VERSION}-trixie-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY shared shared
COPY services services
RUN npm run build

# ---- runtime: production dependencies, the compiled JavaScript, the embedded config ------
FROM node:${NODE_VERSION}-trixie-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production
# Dependencies first, so a source-only change reuses this layer.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY LICENSE README.md ./
COPY bin bin
COPY config config
COPY --from=build /src/dist dist

# A larger young generation: a router with a thousand jobs in flight keeps them alive past the
# default 16 MB semi-space, so they were copied to the old generation and collected there. 64 MB
# semi-spaces cost at most 96 MB more memory per process (figures: README "Scaling out").
ENV NODE_OPTIONS=--max-semi-space-size=64
# Where router, pricing and gateway serve /livez, /readyz and /metrics (`--ops-listen` overrides).
ENV SWITCHYARD_OPS_LISTEN=0.0.0.0:9464
# gateway (OpenAI API), sim-provider, ops.
EXPOSE 8080 8790 9464

# Files stay root-owned and read-only to the service. A numeric user (the image's `node`) so
# Kubernetes can check runAsNonRoot; Node's compile cache goes to /tmp.
USER 1000:1000

# Checks the service's /livez on the ops port (bin/healthcheck.js: Node's fetch, since the slim
# image has no curl or wget). The sim-provider has no ops port: docker-compose.yml and the
# Kubernetes manifests check its /healthz instead. One-off commands (publish, tail) run too
# briefly for it to matter.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 CMD ["node", "bin/healthcheck.js"]

ENTRYPOINT ["node", "bin/switchyard.js"]
CMD ["--help"]

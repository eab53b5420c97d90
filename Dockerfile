# One image for every Switchyard service: the container's command picks which one
# (router, sim-provider, publish, tail, ...). See docker-compose.yml.
# Node 22: Node 20 is out of support; package.json's engines (>=20.19) allow either.
FROM node:22-slim

WORKDIR /app
ENV NODE_ENV=production

# Dependencies first, so a source-only change reuses this layer. tsx is a runtime dependency
# (bin/switchyard.js runs the TypeScript through it), so there is no build step.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

COPY . .

# Sources stay root-owned and read-only to the service; tsx keeps its cache in /tmp.
USER node

ENTRYPOINT ["node", "bin/switchyard.js"]
CMD ["--help"]

# Gatehouse gateway image. Multi-stage: native modules (better-sqlite3) build in the first stage;
# the runtime stage has Node, openssl (self-signed development certificates), git (fast-forward
# checks of git pushes) and the app only.
FROM node:20-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY bin ./bin
COPY src ./src
COPY tsconfig.json ./

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends openssl ca-certificates tini git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app /app
RUN mkdir -p /data && chown node:node /data
USER node
ENV NODE_ENV=production
VOLUME ["/data"]
EXPOSE 8080 15432 18080
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/app/bin/gatehouse.js"]
CMD ["gateway", "--config", "/etc/gatehouse/gatehouse.yaml"]

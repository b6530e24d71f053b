# The Ferry worker image: Node 20, virsh (libvirt-clients) and ssh for qemu+ssh:// URIs.
FROM node:20-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY common ./common
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker
COPY client ./client
COPY cli ./cli
COPY hypervisor ./hypervisor
COPY inventory ./inventory
COPY lab ./lab
COPY webui ./webui
COPY scripts/build-webui.cjs ./scripts/build-webui.cjs
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libvirt-clients openssh-client ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app /app
ENV NODE_ENV=production FERRY_HOME=/var/lib/ferry
VOLUME /var/lib/ferry
ENTRYPOINT ["node", "/app/bin/ferry.js"]
CMD ["worker"]

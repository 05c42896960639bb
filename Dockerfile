# The image the k8s/ manifests run: Thresher and Ray on CUDA-enabled torch, the same code on the
# head, CPU and GPU pods. Build: docker build -t ghcr.io/thresher-project/thresher:0.1.0 .
FROM python:3.11-slim

# wget: KubeRay's pod probes; tini: reaps Ray's worker processes as PID 1.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget tini \
    && rm -rf /var/lib/apt/lists/*

# Same torch/torchvision pins as the Makefile, from the CUDA 12.8 wheel index (they run on CPU too).
RUN pip install --no-cache-dir "torch==2.14.1" "torchvision==0.29.1" \
        --extra-index-url https://download.pytorch.org/whl/cu128

WORKDIR /opt/thresher
COPY pyproject.toml README.md ./
COPY pipelines ./pipelines
COPY crawl ./crawl
COPY filters ./filters
COPY dedup ./dedup
COPY captioning ./captioning
COPY manifests ./manifests
# ray[default] adds the dashboard and job server that KubeRay and `ray job submit` talk to.
RUN pip install --no-cache-dir . "ray[default,data]==2.60.0"

# KubeRay starts Ray with its own command; a plain `docker run` gets the CLI.
RUN useradd --create-home --uid 1000 ray
USER ray
ENTRYPOINT ["tini", "--"]
CMD ["thresher", "--help"]

# The image docker-compose.yaml runs: the official Airflow image plus feedstock's pinned requirements.
FROM apache/airflow:3.3.2-python3.11
USER root
COPY --chown=airflow:root requirements.txt pyproject.toml /opt/feedstock/
COPY --chown=airflow:root include /opt/feedstock/include
USER airflow
# Locally torch is the CPU build from a wheel on disk (2.13.0+cpu); the image takes the same release from PyPI.
RUN sed -i 's/^torch==2.13.0+cpu$/torch==2.13.0/' /opt/feedstock/requirements.txt \
    && pip install --no-cache-dir -r /opt/feedstock/requirements.txt -e /opt/feedstock && pip check

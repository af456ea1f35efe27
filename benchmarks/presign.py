"""Workload ``presign``: URLs per second per core, batchflow's signers vs the vendor SDKs.

Single thread, one process. Each subject signs distinct synthetic keys for a time budget (or a
key cap); both wall-clock and CPU-time rates are recorded, and the ratios use CPU time (URLs per
CPU-second = per core), which the other tenants of a shared 2-core machine disturb less.
Baselines: botocore ``generate_presigned_url`` (``Config(signature_version="s3v4")``),
gcloud-aio-storage ``Blob.get_signed_url`` (RSA; it has no HMAC signing) and azure-storage-blob
``generate_blob_sas`` + the URL (an f-string with ``quote``, and ``BlobClient(...).url``).
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from batchflow.testing import synthetic_key
from benchmarks._common import Case, Report, RunConfig

__all__ = ["run"]

AK, SK = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AZ_ACCOUNT = "benchaccount"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BUCKET = "bench-bucket"
TTL = 86400

SignFn = Callable[[str], str]


def _measure(sign: SignFn, *, budget: float, cap: int, offset: int) -> tuple[float, float, int]:
    """(URLs per wall second, URLs per CPU second, URLs) over distinct keys."""
    done = 0
    w0, c0 = time.perf_counter(), time.process_time()
    while done < cap:
        for i in range(offset + done, offset + done + 50):
            sign(synthetic_key(i))
        done += 50
        if time.perf_counter() - w0 >= budget:
            break
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return done / wall, done / max(cpu, 1e-9), done


def _rsa_info() -> dict[str, object]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "bench",
        "private_key_id": "0123abcd",
        "private_key": pem,
        "client_email": "bench@bench.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }


def _subjects(info: dict[str, object]) -> dict[str, tuple[str, SignFn]]:
    """name -> (family, sign(key) -> url)."""
    import anyio
    import botocore.session
    from azure.storage.blob import BlobClient, generate_blob_sas
    from botocore.config import Config

    from batchflow.signing import AzureSasSigner, GcsSigner, S3Signer

    s3 = S3Signer(access_key=AK, secret_key=SK, region="eu-west-1")
    boto: Any = botocore.session.get_session().create_client(
        "s3", region_name="eu-west-1", aws_access_key_id=AK, aws_secret_access_key=SK,
        config=Config(signature_version="s3v4"),
    )  # fmt: skip
    gcs_rsa = GcsSigner.from_service_account_info(info)
    gcs_hmac = GcsSigner.from_hmac("GOOG1EBENCHACCESSID", "bench-hmac-secret")
    az = AzureSasSigner(account_name=AZ_ACCOUNT, account_key=AZ_KEY)
    az_url = f"https://{AZ_ACCOUNT}.blob.core.windows.net"

    import gcloud.aio.storage.blob as gblob

    gcloud_token = types.SimpleNamespace(service_data=info)
    bucket_ns = types.SimpleNamespace(name=BUCKET)

    def gcloud_sign(key: str) -> str:
        blob = gblob.Blob(bucket_ns, key, {"size": 0})  # type: ignore[arg-type]

        async def one() -> str:
            url: str = await blob.get_signed_url(TTL, token=gcloud_token)  # type: ignore[arg-type]
            return url

        return anyio.run(one)

    def sas(key: str) -> str:
        now = datetime.now(UTC)
        token: str = generate_blob_sas(
            AZ_ACCOUNT, "bench", key, account_key=AZ_KEY, permission="r",
            start=now - timedelta(seconds=300), expiry=now + timedelta(seconds=TTL),
            protocol="https",
        )  # fmt: skip
        return token

    def sdk_az_quote(key: str) -> str:
        return f"{az_url}/bench/{quote(key, safe='/~')}?{sas(key)}"

    def sdk_az_client(key: str) -> str:
        url: str = BlobClient(
            account_url=az_url, container_name="bench", blob_name=key, credential=sas(key)
        ).url
        return url

    return {
        "batchflow S3Signer": ("s3", lambda k: s3.sign(BUCKET, k, expires_in=TTL)),
        "botocore generate_presigned_url": (
            "s3",
            lambda k: boto.generate_presigned_url(
                "get_object", Params={"Bucket": BUCKET, "Key": k}, ExpiresIn=TTL
            ),
        ),
        "batchflow GcsSigner RSA": ("gcs-rsa", lambda k: gcs_rsa.sign(BUCKET, k, expires_in=TTL)),
        "gcloud-aio Blob.get_signed_url": ("gcs-rsa", gcloud_sign),
        "batchflow GcsSigner HMAC": (
            "gcs-hmac",
            lambda k: gcs_hmac.sign(BUCKET, k, expires_in=TTL),
        ),
        "batchflow AzureSasSigner": ("azure", lambda k: az.sign("bench", k, expires_in=TTL)),
        "azure generate_blob_sas + quote": ("azure", sdk_az_quote),
        "azure generate_blob_sas + BlobClient.url": ("azure", sdk_az_client),
    }


_CAPS = {"gcloud-aio Blob.get_signed_url": 400}
_PAIRS = (
    ("s3", "batchflow S3Signer", "botocore generate_presigned_url"),
    ("gcs-rsa", "batchflow GcsSigner RSA", "gcloud-aio Blob.get_signed_url"),
    ("azure", "batchflow AzureSasSigner", "azure generate_blob_sas + quote"),
    ("azure (BlobClient)", "batchflow AzureSasSigner", "azure generate_blob_sas + BlobClient.url"),
)


def run(config: RunConfig) -> Report:
    budget = 0.25 if config.quick else 2.0
    report = Report("presign", "presigned URLs per second per core (single thread)", config)
    report.parameters = {
        "timeBudgetSecondsPerSample": budget,
        "keyCaps": _CAPS,
        "ttlSeconds": TTL,
        "keys": "distinct synthetic keys d123/img-0000000123.jpg",
        "gcsKey": "RSA 2048 service-account key",
        "ratioBasis": "URLs per CPU-second (process_time), single thread",
    }
    report.notes.append(
        "gcloud-aio-storage has no HMAC signing: 'batchflow GcsSigner HMAC' has no baseline."
    )
    subjects = _subjects(_rsa_info())
    offset = 0
    for name, (family, sign) in subjects.items():
        sign(synthetic_key(0))  # warm-up (lazy imports, caches)
        walls: list[float] = []
        cpus: list[float] = []
        counts: list[int] = []
        for _ in range(config.repeat):
            wall, cpu, n = _measure(sign, budget=budget, cap=_CAPS.get(name, 10**9), offset=offset)
            offset += n
            walls.append(wall)
            cpus.append(cpu)
            counts.append(n)
        params: dict[str, Any] = {"family": family, "urlsPerSample": counts}
        report.add(Case(name, "URLs/CPU-s", "URL/s", cpus, params))
        report.add(Case(name, "URLs/wall-s", "URL/s", walls, params))
    for family, ours, theirs in _PAIRS:
        report.ratio(
            f"{family}: batchflow / baseline",
            report.find(ours, "URLs/CPU-s"),
            report.find(theirs, "URLs/CPU-s"),
            f"{ours} vs {theirs}, URLs per CPU-second (>1: batchflow faster)",
        )
    from benchmarks._plot import bar_plot

    report.plots.append(
        bar_plot(
            config.results_dir / "presign.png",
            {c.subject: c.median for c in report.cases if c.metric == "URLs/CPU-s"},
            title="Presigned URLs per CPU-second (single thread, log scale)",
            ylabel="URLs / CPU-second",
            logy=True,
        )
    )
    return report

"""The server catalog: schema (one extensible MetaData), engine setup and staging queries."""

from batchflow.server.catalog.db import create_catalog_engine, create_schema
from batchflow.server.catalog.schema import metadata

__all__ = ["create_catalog_engine", "create_schema", "metadata"]

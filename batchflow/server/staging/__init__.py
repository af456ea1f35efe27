"""Data staging: batches, ingests, shards and files, the same shape as :mod:`..jobs`.

- :mod:`.routes`, :mod:`.blob_routes`: the HTTP face (PROTOCOL.md's data-staging routes and the
  signed ``/blobs`` URLs); they call the services and read models below, never raw SQL.
- :mod:`.service`: :class:`StagingService`, batches and files on the catalog and the blob store.
- :mod:`.references`: reference ingests and the worker that fetches them.
- :mod:`.uploads`, :mod:`.tarextract`, :mod:`.tarsafe`: video and tar uploads, safe extraction.
- :mod:`.sweeper`: deletes expired batches, their rows and blobs.
- :mod:`.schema`, :mod:`.batches`, :mod:`.ingests`, :mod:`.notify`: tables, queries, webhooks.
- :mod:`.port`: the job engine's StagingPort and Notifier over this package.
"""

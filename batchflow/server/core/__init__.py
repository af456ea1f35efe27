"""Parts every half of the server shares: settings, auth, errors, the catalog database, blobs.

- :mod:`.settings`: :class:`ServerSettings` from flags and env.
- :mod:`.db`: the one ``metadata`` every table is defined on, engine creation.
- :mod:`.blobs`: the :class:`BlobStore` Protocol, the local disk store, signed URLs.
- :mod:`.errors`: the one error-to-HTTP-status table of every route.
- :mod:`.auth`, :mod:`.bodylimit`: request guards.
- :mod:`.netguard`: outbound HTTP with SSRF checks (reference fetches, webhooks).
- :mod:`.webhooks`, :mod:`.outbox`: at-least-once webhook delivery through a catalog outbox.
- :mod:`.paging`: the page size rule and the one page-token format of every listing.
- :mod:`.wakeup`: the wake-up event of background loops.
"""

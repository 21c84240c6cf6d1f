"""OpenAPI shaped for generated clients (TypeScript, Swift, Kotlin).

FastAPI's defaults are adjusted in one package, generically, so routes added later get
the same treatment:

- every error response is the shared ``Problem`` schema as ``application/problem+json``
  (FastAPI's own 422 schema is replaced); every operation declares 500, and every
  operation behind the bearer token declares 401;
- inline string enums become named component schemas (``CheckoutSessionPurpose``), and
  inline request/response objects become ``<OperationId>Request``/``Response``
  components, because generators name types after components (Swift and Kotlin would
  otherwise invent ``Body_...`` or ``Operation200Response`` names);
- integer money fields say that they are in minor units;
- every JSON request and success response has an example (an explicit one wins; one
  is assembled from the fields' own examples otherwise);
- the document is deterministic so the committed copy can be diffed.

``document.py`` builds the document and applies the passes in order: ``protocol.py``
(problem responses, headers, rate limits), ``components.py`` (named components,
required response fields, minor units) and ``examples.py``; ``walk.py`` holds what
they share. ``tests/contract/test_openapi.py`` holds the rules these passes keep.
"""

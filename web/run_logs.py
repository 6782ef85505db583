"""A run's stored log outside the live view: the raw text, and a search over all of it."""

from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse

from web.runs import run_or_404
from web.selectors import run_log_search, run_log_texts

# Chunks per database read while streaming: a chunk holds up to 64 KiB (StageLog.FLUSH_SIZE).
DOWNLOAD_BATCH_CHUNKS = 100
LONGEST_QUERY = 200
# A search for "e" in a long log matches nearly every line; this many are enough to page through.
SEARCH_MATCHES_LIMIT = 1000
# Of each matching line, as much as a list of results shows; the page has the rest.
MATCH_TEXT_CHARACTERS = 300


@login_required
def run_log_download(request: HttpRequest, slug: str, number: int) -> StreamingHttpResponse:
    """The log as stored (secrets masked, escapes kept), streamed: never whole in memory."""
    run = run_or_404(slug, number)
    response = StreamingHttpResponse(_stored_log(run.pk), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="{run.project.slug}-{run.number}.log"'
    return response


@login_required
def run_log_search_view(request: HttpRequest, slug: str, number: int) -> HttpResponse:
    """The numbered lines that contain ?q=, from the stored log: the page holds only what it
    has been sent and draws only the lines in view, so the browser's own find cannot."""
    run = run_or_404(slug, number)
    query = request.GET.get("q", "")
    if not query or len(query) > LONGEST_QUERY or "\x00" in query:
        return JsonResponse(
            {"error": f"search for 1 to {LONGEST_QUERY} characters, without NUL"}, status=400
        )
    found = run_log_search(run, query, limit=SEARCH_MATCHES_LIMIT)
    return JsonResponse(
        {
            "query": query,
            "matches": [
                {
                    "line": line.number,
                    "stage": line.stage,
                    "text": line.text[:MATCH_TEXT_CHARACTERS],
                }
                for line in found.matches
            ],
            "truncated": found.truncated,
        }
    )


async def _stored_log(run_id: int) -> AsyncIterator[bytes]:
    # An asynchronous iterator: under ASGI Django would read a synchronous one to the end
    # before sending a byte.
    after = 0
    while batch := await sync_to_async(run_log_texts)(
        run_id, after=after, limit=DOWNLOAD_BATCH_CHUNKS
    ):
        for _, text in batch:
            yield text.encode()
        after = batch[-1][0]

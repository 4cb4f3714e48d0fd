// The HTTP plumbing of the service, apart from what it serves: a request body read up to a limit
// (413 past it, before a byte is buffered beyond), JSON replies, and one error type that carries
// its status. Every reply, errors included, is JSON, so a client never parses an HTML error page.
'use strict';

/** An error with the HTTP status to answer it with. */
class HttpError extends Error {
  constructor(status, message, headers = {}) {
    super(message);
    this.status = status;
    this.headers = headers;
  }
}

/** Sends `body` as JSON with `status`. */
function sendJson(res, status, body, headers = {}) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/**
 * The request body as one Buffer, at most `maxBytes`: a Content-Length above it is refused before
 * reading, and a body that grows past it (chunked, or a lying length) at the first chunk over. A
 * refused body is left to Node, which reads and drops the rest once the reply is sent (bounded by
 * server.requestTimeout), so the client gets its 413 rather than a broken pipe mid-upload. The
 * bytes are handed on as bytes: a string would be read as a *path* by readCsv.
 */
function readBody(req, maxBytes) {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) return Promise.reject(new HttpError(413, `The body is ${declared} bytes; this service takes at most ${maxBytes}`));
  return new Promise((resolve, reject) => {
    const chunks = [];
    let total = 0;
    const settle = (f, x) => {
      req.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      f(x);
    };
    const onData = (chunk) => {
      total += chunk.length;
      if (total > maxBytes) settle(reject, new HttpError(413, `The body is over ${maxBytes} bytes, the most this service takes`));
      else chunks.push(chunk);
    };
    const onEnd = () => settle(resolve, Buffer.concat(chunks, total));
    const onError = (err) => settle(reject, err);
    const onClose = () => settle(reject, new HttpError(400, 'The client closed the request before the end of its body'));
    req.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

/** The media type of a request, lower case, without parameters ('text/csv; charset=utf-8' → 'text/csv'). */
const mediaType = (req) => String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();

/**
 * What a thrown error means to a client. Argument checks in handgrad throw TypeError/RangeError
 * and data errors a HandgradError with code ERR_FILE: the client's mistake (400), except a gzip
 * body inflating past opts.maxBytes (413). Anything else is the server's (500), answered, never a crash.
 */
function statusOf(err) {
  if (err instanceof HttpError) return err.status;
  if (err instanceof TypeError || err instanceof RangeError || err instanceof URIError) return 400; // URIError: a malformed %-escape in the path
  if (err && err.code === 'ERR_FILE') return /opts\.maxBytes/.test(err.message) ? 413 : 400;
  return 500;
}

module.exports = { HttpError, mediaType, readBody, sendJson, statusOf };

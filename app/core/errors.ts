/**
 * The one error type of the API. `message` goes to the client; `cause` only to
 * the server log.
 */
export class AppError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly data?: Record<string, unknown>,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "AppError";
  }
}

/** What percent-encoding in a path must follow, as the 400s for it say. */
export const PERCENT_ENCODING_RULE = "each % must start a UTF-8 byte as %XX (hex); write a literal % as %25";

/** 400: the request is malformed; say what is wrong and what is allowed. */
export const badRequest = (message: string, data?: Record<string, unknown>) => new AppError(400, message, data);
/** 401: no credentials, or credentials that do not verify. */
export const unauthenticated = (message: string) => new AppError(401, message);
/** 403: credentials verify but do not allow this. */
export const forbidden = (message: string) => new AppError(403, message);
/** 404: no such thing. */
export const notFound = (message: string) => new AppError(404, message);
/** 413: the body is larger than allowed. */
export const tooLarge = (message: string, data?: Record<string, unknown>) => new AppError(413, message, data);

/**
 * Input that breaks a rule of the domain (a setting, a destination rule, a feed
 * rule): `message` says what was wrong and what is allowed, `fields` the same
 * per field. Domain code throws this, never an HTTP error; the HTTP layer
 * answers it with a 400 (and the admin UI shows the fields by their inputs).
 */
export class InvalidInput extends Error {
  override name = "InvalidInput";
  constructor(message: string, readonly fields?: Record<string, string>) {
    super(message);
  }
}

/** A startup or command-line error: printed as is, exit code 2. */
export class UsageError extends Error {
  override name = "UsageError";
}

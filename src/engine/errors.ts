// Every failure the engine reports to a user is an EngineError: a stable `code` that the
// host can branch on, and a message written for the person who chose the model or text.

export type EngineErrorCode =
  | 'NOT_FOUND'
  | 'BAD_CONFIG'
  | 'UNSUPPORTED_ARCHITECTURE'
  | 'PICKLE_REFUSED'
  | 'MISSING_TOKENIZER'
  | 'BAD_TOKENIZER'
  | 'BAD_SAFETENSORS'
  | 'BAD_WEIGHTS'
  | 'BAD_ONNX'
  | 'EMPTY_INPUT'
  | 'INPUT_TOO_LONG'
  | 'TOO_LARGE'
  | 'CANCELLED'
  | 'RUNTIME'
  | 'ENGINE_CRASHED'
  | 'DOWNLOAD'
  | 'BAD_REQUEST'
  | 'BAD_SETTING';

export class EngineError extends Error {
  constructor(
    readonly code: EngineErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'EngineError';
  }
}

export function isEngineError(e: unknown): e is EngineError {
  return e instanceof EngineError;
}

/** Plain-object form of an error, for crossing a process boundary. */
export interface SerializedError {
  code: EngineErrorCode;
  message: string;
}

export function serializeError(e: unknown): SerializedError {
  if (e instanceof EngineError) return { code: e.code, message: e.message };
  const message = e instanceof Error ? e.message : String(e);
  return { code: 'RUNTIME', message };
}

export function deserializeError(s: SerializedError): EngineError {
  return new EngineError(s.code, s.message);
}

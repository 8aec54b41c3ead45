// Calls to signalbox's HTTP API, with the pasted bearer token.
//
// The token lives in sessionStorage: it is gone when the tab closes and is
// never written anywhere else. Reads send it when there is one (with
// --api-tokens, even reads need a viewer token); the graph stream is not
// behind tokens, so EventSource (which cannot send headers) reads it as is.

const tokenKey = "signalbox.token";

export function getToken(): string {
  try {
    return sessionStorage.getItem(tokenKey) ?? "";
  } catch {
    return "";
  }
}

export function setToken(tok: string): void {
  try {
    if (tok) sessionStorage.setItem(tokenKey, tok);
    else sessionStorage.removeItem(tokenKey);
  } catch {
    // Storage refused (private mode): the token lasts until reload.
  }
  memoryToken = tok;
  for (const f of tokenListeners) f(tok);
}

let memoryToken = getToken();
const tokenListeners: ((tok: string) => void)[] = [];

export function onTokenChange(f: (tok: string) => void): void {
  tokenListeners.push(f);
}

export function currentToken(): string {
  return memoryToken;
}

/** An answer that was not 2xx, with the API's {error, hint}. */
export class APIFailure extends Error {
  constructor(public status: number, message: string, public hint?: string) {
    super(message);
  }
}

export async function api<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  const tok = currentToken();
  if (tok) headers.Authorization = "Bearer " + tok;
  let payload: string | undefined;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let resp: Response;
  try {
    resp = await fetch(path, { method, headers, body: payload, signal, cache: "no-store" });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new APIFailure(0, "signalbox does not answer", "is it running? the page retries by itself");
  }
  const text = await resp.text();
  if (!resp.ok) {
    let msg = `${resp.status} ${resp.statusText}`;
    let hint: string | undefined;
    try {
      const e = JSON.parse(text) as { error?: string; hint?: string };
      if (e.error) msg = e.error;
      hint = e.hint;
    } catch {
      if (text) msg = text.trim();
    }
    throw new APIFailure(resp.status, msg, hint);
  }
  return (text ? JSON.parse(text) : undefined) as T;
}

// The workbench's JSON API, with the bearer token (if one is set in Settings) on every call.

const TOKEN_KEY = "erank-workbench-token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
}

export class ApiError extends Error {}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json();
  if (!response.ok) {
    const reason = data && data.error ? data.error.reason : response.statusText;
    throw new ApiError(`${response.status}: ${reason}`);
  }
  return data;
}

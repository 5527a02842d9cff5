// Quoting for the shell commands the template builder writes (as e2b quotes them, so both SDKs
// send the same steps).

/** `s` as one shell word: unchanged when it needs no quoting, else in single quotes. */
export function shellQuote(s: string): string {
  if (s === '') return "''"
  if (!/[^\w@%+=:,./-]/.test(s)) return s
  return `'${s.replace(/'/g, `'"'"'`)}'`
}

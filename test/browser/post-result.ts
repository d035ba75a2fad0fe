// In a page opened by runPage (chromium.ts): runs the page's work and posts
// its result, or the error that stopped it, to /result.

/** An error as text, its stack included. */
export const errorText = (e: unknown): string => (e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e));

export async function postResult(run: () => Promise<Record<string, unknown>>): Promise<void> {
  let result: Record<string, unknown>;
  try {
    result = await run();
  } catch (e) {
    result = { error: errorText(e) };
  }
  await fetch('/result', { method: 'POST', body: JSON.stringify(result) });
}

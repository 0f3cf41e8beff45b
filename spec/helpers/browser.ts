/**
 * A real browser for specs: Debian's `chromium` (apt-get install chromium) driven by playwright-core.
 * One browser per spec file, launched before its first test and closed after its last; every page is
 * opened in a context of its own (no cookies or storage shared between pages) and closed after its test.
 *
 * @example
 * const browser = useBrowser();
 * it('shows the echo', async () => {
 *   const page = await browser.page(`http://127.0.0.1:${port}/`);
 *   await waitForText(page, '#log', 'echo: hello');
 * });
 */
import { type Browser, type Page, chromium } from 'playwright-core';
import { delay, onTeardown } from './net';

/** Debian's launcher script: it adds Debian's flags and runs /usr/lib/chromium/chromium. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/**
 * The flags of every launch. Playwright refuses `--user-data-dir` (it makes a fresh profile directory
 * itself with mkdtemp in the temp directory, and removes it when the browser closes), so none is given.
 */
export const CHROMIUM_FLAGS: readonly string[] = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-quic',
  '--no-first-run',
  '--disable-component-update',
  '--disable-sync',
];

/** Generous: two cores shared with other jobs. */
const LAUNCH_TIMEOUT_MS = 60_000;
const TEXT_TIMEOUT_MS = 15_000;

/** What each page logged (console messages, uncaught errors), for failure messages. */
const pageLogs = new WeakMap<Page, string[]>();

/** What `page` logged so far: console messages and uncaught errors, one line each. */
export function logsOf(page: Page): readonly string[] {
  return pageLogs.get(page) ?? [];
}

export interface BrowserHandle {
  /** Opens `url` in a new page of its own context; the page is closed after the current test. */
  page(url: string): Promise<Page>;
}

/** Launches one browser for the spec file that calls it (in beforeAll) and closes it in afterAll. */
export function useBrowser(): BrowserHandle {
  let browser: Browser | null = null;
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: [...CHROMIUM_FLAGS],
      timeout: LAUNCH_TIMEOUT_MS,
    });
  }, LAUNCH_TIMEOUT_MS);
  afterAll(async () => {
    await browser?.close();
    browser = null;
  });
  return {
    async page(url) {
      if (browser === null) throw new Error('useBrowser(): no browser (call it at the top of the spec file)');
      const context = await browser.newContext();
      onTeardown(() => context.close());
      const page = await context.newPage();
      const lines: string[] = [];
      pageLogs.set(page, lines);
      page.on('console', (message) => lines.push(`console.${message.type()}: ${message.text()}`));
      page.on('pageerror', (error) => lines.push(`page error: ${error.message}`));
      await page.goto(url);
      return page;
    },
  };
}

/** The text of the first element matching `selector` ('' when there is none). */
export async function textOf(page: Page, selector: string): Promise<string> {
  const found = page.locator(selector).first();
  if ((await found.count()) === 0) return '';
  return (await found.textContent({ timeout: 1000 }).catch(() => null)) ?? '';
}

/**
 * Waits until the text of the first element matching `selector` contains `text` (or matches it, for a
 * RegExp); fails with what the element showed instead, and what the page logged last.
 */
export async function waitForText(
  page: Page,
  selector: string,
  text: string | RegExp,
  timeout = TEXT_TIMEOUT_MS,
): Promise<void> {
  const shows = (shown: string): boolean => (typeof text === 'string' ? shown.includes(text) : text.test(shown));
  const deadline = Date.now() + timeout;
  let shown = await textOf(page, selector);
  while (!shows(shown)) {
    if (Date.now() > deadline) {
      const logs = logsOf(page).slice(-5);
      throw new Error(
        `timed out after ${timeout} ms waiting for ${selector} to show ${String(text)}; it shows ${JSON.stringify(shown)}` +
          (logs.length > 0 ? `; page logs: ${logs.join(' | ')}` : ''),
      );
    }
    await delay(50);
    shown = await textOf(page, selector);
  }
}

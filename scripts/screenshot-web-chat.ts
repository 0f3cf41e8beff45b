/**
 * Takes docs/web-chat.png: the web chat example (examples/web-chat.ts) with a short conversation between two
 * browser pages and a terminal user, as alice's page shows it. Run with `npm run screenshot:web-chat`.
 * Needs Debian's chromium (apt-get install chromium); everything runs on free ports of 127.0.0.1.
 */
import { connect } from 'node:net';
import { join } from 'node:path';
import { chromium, type Page } from 'playwright-core';
import { start } from '../examples/web-chat';

const OUT = join(__dirname, '..', 'docs', 'web-chat.png');

async function joinAs(page: Page, nick: string): Promise<void> {
  await page.getByLabel('Your nick').fill(nick);
  await page.keyboard.press('Enter');
  await page.getByText(`Connected as ${nick}.`).waitFor();
}

async function say(page: Page, line: string): Promise<void> {
  await page.getByRole('textbox', { name: 'Message', exact: true }).fill(line);
  await page.keyboard.press('Enter');
}

async function main(): Promise<void> {
  const chat = await start({ host: '127.0.0.1', port: 0, webPort: 0 });
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
  try {
    const url = `http://127.0.0.1:${chat.webAddress.port}/`;
    const alice = await (await browser.newContext({ viewport: { width: 720, height: 620 } })).newPage();
    const bob = await (await browser.newContext()).newPage();
    await alice.goto(url);
    await joinAs(alice, 'alice');
    await bob.goto(url);
    await joinAs(bob, 'bob');
    // A terminal user, as with `nc localhost 7777`.
    const nc = connect(chat.address.port, '127.0.0.1');
    nc.on('data', () => undefined);
    nc.write('carol\n');
    await alice.getByText('is now carol').waitFor();
    await say(alice, 'Hi both! Anyone up for lunch?');
    await bob.getByText('alice: Hi both!').waitFor();
    await say(bob, 'Sure, in ten minutes?');
    nc.write('count me in, typing from a terminal\n');
    await alice.getByText('carol: count me in').waitFor();
    await say(alice, 'Great, see you at the door!');
    await alice.getByText('see you at the door').waitFor();
    await alice.screenshot({ path: OUT });
    console.log(`wrote ${OUT}`);
    nc.destroy();
  } finally {
    await browser.close();
    await chat.mux.destroy({ timeout: 200 });
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});

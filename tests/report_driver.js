// Reads a Snakemake 9 HTML report (a React app) the way a reader does, in a real browser:
// tests/test_report.py evaluates this expression in headless Chromium after the page loaded and
// gets back what it saw. For every category of the report: its menu entry; for every result
// in it: its row in the category's table, its eye button (an image is drawn in the page and
// decoded; a table or text is a link to its embedded data, fetched here), and its info button
// (the description, i.e. the rendered caption). Every view's text is scanned for the messages
// docutils writes into a caption it could not parse.
(async function () {
    const seen = {categories: {}, results: {}, problems: [], messages: []};
    const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
    async function until(what, probe) {
        for (let i = 0; i < 500; i++) {
            const found = probe();
            if (found) return found;
            await sleep(20);
        }
        throw new Error("timed out waiting for " + what + "; the page shows: " + document.body.innerText.slice(0, 1500));
    }
    const MESSAGES = /System Message|Undefined substitution|Unknown target name|Unknown interpreted text role|start-string without end-string|(?:DEBUG\/0|INFO\/1|WARNING\/2|ERROR\/3|SEVERE\/4)/g;
    function scan(where) {
        for (const match of document.body.innerText.matchAll(MESSAGES)) seen.messages.push(where + ": " + match[0]);
    }
    function row(path) {
        return Array.from(document.querySelectorAll("tr")).find(
            (tr) => tr.querySelector("td") && tr.querySelector("td").textContent.trim() === path);
    }
    try {
        await until("the report app", () => typeof app !== "undefined" && app && document.querySelector("#app ul"));
        seen.start = document.body.innerText;  // the start page: menu and workflow description (workflow.rst)
        scan("start page");
        const menu = Array.from(document.querySelectorAll("#app a")).map((a) => a.textContent.trim());
        for (const [category, subcategories] of Object.entries(categories)) {
            const shown = {in_menu: menu.includes(category), rows: []};
            seen.categories[category] = shown;
            for (const [subcategory, paths] of Object.entries(subcategories)) {
                for (const path of paths) {
                    const entry = results[path];
                    const record = {category: category, subcategory: subcategory};
                    seen.results[path] = record;
                    // the category's table (what its menu entry shows) and the result's row in it
                    app.showCategory(category);
                    const tr = await until(path + " in the table of " + category, () => row(path));
                    shown.rows.push(path);
                    const [eye, info] = tr.querySelectorAll("td:last-child a");
                    if (entry.mime_type.startsWith("image/")) {
                        eye.click();
                        const img = await until("the image " + path, () => Array.from(document.images).find(
                            (image) => image.getAttribute("src") === entry.data_uri));
                        await img.decode().catch((error) => { throw new Error(path + ": " + error); });
                        record.image = {width: img.naturalWidth, height: img.naturalHeight};
                    } else if (entry.mime_type === "text/html") {
                        // shown in a frame of the page; its content is read from the data it shows
                        eye.click();
                        const frame = await until("the frame of " + path, () => Array.from(
                            document.querySelectorAll("iframe")).find((f) => f.getAttribute("src") === entry.data_uri));
                        const response = await fetch(frame.getAttribute("src"));
                        record.link = {is_data: true, ok: response.ok, type: response.headers.get("content-type"),
                                       text: await response.text()};
                    } else {
                        const href = eye.getAttribute("href");
                        const response = await fetch(href);
                        const text = await response.text();
                        record.link = {is_data: href === entry.data_uri, ok: response.ok,
                                       type: response.headers.get("content-type"), text: text};
                    }
                    scan(path + " (view)");
                    info.click();
                    await until("the description of " + path, () => !entry.caption ||
                        Array.from(document.querySelectorAll("li")).some((li) => li.textContent.trim() === "Description"));
                    record.caption = Array.from(document.querySelectorAll("li.prose")).map((li) => li.innerText).join("\n");
                    scan(path + " (description)");
                }
            }
        }
    } catch (error) {
        seen.problems.push(String((error && error.stack) || error));
    }
    return JSON.stringify(seen);
})()

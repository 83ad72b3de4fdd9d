// Progressive enhancement only: every page works without it.
// "Select all" ticks every event checkbox on the page.
document.querySelectorAll("input.select-all").forEach(function (box) {
  box.addEventListener("change", function () {
    box.closest("form").querySelectorAll('input[name="ids"]').forEach(function (item) {
      item.checked = box.checked;
    });
  });
});
// Buttons that act on every matching event ask first.
document.querySelectorAll("button[formaction]").forEach(function (button) {
  button.addEventListener("click", function (event) {
    if (!window.confirm(button.textContent.trim() + "?")) event.preventDefault();
  });
});

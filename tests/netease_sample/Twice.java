// Test harness, not vendor code: runs NetEase's sample (Test.main) twice inside one second, so the two calls
// send byte-identical requests (its Nonce is constant and CurTime has a one-second resolution). Prints the
// second it used and both answers, one per line; tries again if the two calls straddled a second. With
// "warm" as its argument it first makes one call (loading classes) and starts the pair in a later second.
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;

public class Twice {
    public static void main(String[] args) throws Exception {
        PrintStream out = System.out;
        if (args.length > 0 && args[0].equals("warm")) {
            run();
        }
        for (int attempt = 0; attempt < 20; attempt++) {
            // Start just after a second begins, in a second no earlier call used.
            Thread.sleep(1000L - System.currentTimeMillis() % 1000L + 20L);
            long second = System.currentTimeMillis() / 1000L;
            String first = run();
            String again = run();
            if (System.currentTimeMillis() / 1000L == second) {
                out.println("curtime=" + second);
                out.println(first);
                out.println(again);
                return;
            }
        }
        throw new IllegalStateException("could not make two calls inside one second");
    }

    private static String run() throws Exception {
        PrintStream original = System.out;
        ByteArrayOutputStream captured = new ByteArrayOutputStream();
        System.setOut(new PrintStream(captured, true, "utf-8"));
        try {
            Test.main(new String[0]);
        } finally {
            System.setOut(original);
        }
        return captured.toString("utf-8").trim();
    }
}
